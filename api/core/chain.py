"""Ready-to-sign transactions for the user's own wallet: `to`, `data`, `value`, `chainId`,
encoded with eth-abi from the ABIs ape built; addresses from the deployments file."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_abi import encode
from eth_utils import keccak
from pydantic import BaseModel

from chain.contracts import Deployment, load_abi, load_deployment, payment_token_address
from chain.decode import canonical_type


class TxData(BaseModel):
    """What `eth_sendTransaction` needs besides `from`."""

    to: str
    data: str
    value: str = "0x0"
    chainId: int
    description: str


@lru_cache(maxsize=4)
def deployment(chain_id: int) -> Deployment:
    return load_deployment(chain_id)


def payment_token(chain_id: int, configured: str = "") -> str:
    """The token campaigns and x402 payments use unless told otherwise: `PAYMENT_TOKEN`, else
    the deployment's TestUSDC on a local chain, else Circle's USDC on Base (the indexer
    follows the same one)."""
    token = payment_token_address(deployment(chain_id), configured)
    if token is None:
        raise ChainError(f"no payment token is known on chain {chain_id}: set BUZZER_PAYMENT_TOKEN")
    return token


def _function(contract: str, name: str, arity: int) -> dict[str, Any]:
    for item in load_abi(contract):
        if item.get("type") == "function" and item["name"] == name and len(item["inputs"]) == arity:
            return item
    raise KeyError(f"{contract} has no function {name} of {arity} arguments")


def call_data(contract: str, name: str, *args: Any) -> str:
    function = _function(contract, name, len(args))
    types = [canonical_type(i) for i in function["inputs"]]
    selector = keccak(text=f"{name}({','.join(types)})")[:4]
    return "0x" + (selector + encode(types, list(args))).hex()


def transaction(
    chain_id: int, contract: str, name: str, *args: Any, value: int = 0, description: str = ""
) -> TxData:
    return TxData(
        to=deployment(chain_id).address(contract),
        data=call_data(contract, name, *args),
        value=hex(value),
        chainId=chain_id,
        description=description,
    )


def send_as(rpc_url: str, private_key: str, tx: TxData, timeout: float = 30.0) -> str:
    """Sign and send `tx` with a backend key (the ORACLE) through `chain.sender`, wait for
    success; the tx hash. A revert, in estimation or mined, is a `ChainError` with its reason."""
    from chain.rpc import Rpc, RpcUnavailable
    from chain.sender import ChainSendError, Sender, TxReverted

    if not private_key:
        raise ChainError("no ORACLE key is configured (BUZZER_ORACLE_PRIVATE_KEY)")
    rpc = Rpc(rpc_url, timeout=timeout)
    try:
        sender = Sender(rpc, private_key, tx.chainId, receipt_timeout=timeout)
        receipt = sender.send(tx.to, tx.data, int(tx.value, 16))
    except TxReverted as exc:
        raise ChainError(f"{tx.description} reverted: {exc.reason or 'no reason given'}") from exc
    except (ChainSendError, RpcUnavailable) as exc:
        raise ChainError(f"{tx.description} could not be sent: {exc}") from exc
    finally:
        rpc.close()
    return str(receipt["transactionHash"])


def chain_time(rpc_url: str, timeout: float = 3.0) -> int:
    """The latest block's timestamp: what the next transaction's checks are measured against
    (a local chain's clock can run ahead of ours). Our own clock if the node is unreachable."""
    import time

    from chain.rpc import Rpc, RpcError, RpcUnavailable

    rpc = Rpc(rpc_url, timeout=timeout, retries=0)
    try:
        block = rpc.block("latest")
    except (RpcError, RpcUnavailable):
        block = None
    finally:
        rpc.close()
    return max(int(time.time()), int(block["timestamp"], 16) if block else 0)


class ChainError(Exception):
    """A backend transaction could not be sent or reverted."""

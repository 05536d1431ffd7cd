"""Ready-to-sign transactions for the user's own wallet: `to`, `data`, `value`, `chainId`,
encoded with eth-abi from the ABIs ape built; addresses from the deployments file."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_abi import encode
from eth_utils import keccak
from pydantic import BaseModel

from indexer.contracts import Deployment, load_abi, load_deployment
from indexer.decode import _canonical_type


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


def _function(contract: str, name: str, arity: int) -> dict[str, Any]:
    for item in load_abi(contract):
        if item.get("type") == "function" and item["name"] == name and len(item["inputs"]) == arity:
            return item
    raise KeyError(f"{contract} has no function {name} of {arity} arguments")


def call_data(contract: str, name: str, *args: Any) -> str:
    function = _function(contract, name, len(args))
    types = [_canonical_type(i) for i in function["inputs"]]
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

"""`ChainDriver`: real transactions against a Buzzer deployment on anvil, one method per action.

Every action method signs one transaction with the acting account's key (anvil's default
mnemonic), sends it and waits for its receipt, and returns the receipt; a revert raises
`web3.exceptions.ContractLogicError` with the contract's reason before anything is sent.

Accounts are given by index (0 admin, 1 settler, 2 oracle, 3 guardian, 4 treasury, 5.. users;
`start_anvil` funds 30) or, where an action only names someone, by address.
Tokens are `"usdc"` (the deployment's TestUSDC), `"eth"`/`None` (the zero address) or an
address.

`generate_activity(n_events, seed)` produces a large random mix of every action quickly; see
`tests/support/activity.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, cast

from eth_abi import decode, encode
from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_account.signers.local import LocalAccount
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.types import TxParams, TxReceipt

from api.settlement.merkle import PayoutTree
from chain.contracts import load_abi
from tests.support.anvil import Rpc

if TYPE_CHECKING:
    from tests.support.activity import ActivityReport

MNEMONIC = "test test test test test test test test test test test junk"
ADMIN, SETTLER, ORACLE, GUARDIAN, TREASURY = range(5)
FIRST_USER = 5
TX_REQUEST_GAS = 1_000_000
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
USDC = 10**6
BID_CPM, BID_CPC = 0, 1
ACTIVE, PAUSED, ENDED = 1, 2, 3
CONTRACT_NAMES = (
    "PublisherRegistry",
    "CampaignRegistry",
    "PaymentEscrow",
    "PublisherPayout",
    "TestUSDC",
)
TRANSFER_WITH_AUTHORIZATION_TYPES = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
EIP712_DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

Who = int | str


class TransactionFailed(AssertionError):
    """A transaction was mined but reverted."""


@cache
def _seed() -> bytes:
    return seed_from_mnemonic(MNEMONIC, "")


@cache
def dev_account(index: int) -> LocalAccount:
    """anvil's dev account `index` (the default mnemonic, path m/44'/60'/0'/0/index)."""
    key = key_from_seed(_seed(), f"m/44'/60'/0'/0/{index}")
    account: LocalAccount = Account.from_key(key)
    return account


def abi_type(param: Mapping[str, Any]) -> str:
    """An ABI parameter as an eth_abi type string (tuples spelled out)."""
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind


def checksummed(value: Any, param: Mapping[str, Any]) -> Any:
    """`value` decoded by eth_abi (lower-case addresses) with every address checksummed."""
    kind: str = param["type"]
    if kind.endswith("]"):
        inner = {**param, "type": kind[: kind.rindex("[")]}
        return [checksummed(v, inner) for v in value]
    if kind == "tuple":
        return tuple(checksummed(v, c) for v, c in zip(value, param["components"], strict=True))
    if kind == "address":
        return to_checksum_address(value)
    return value


@dataclass(frozen=True)
class AbiFunction:
    contract: str
    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    output_params: tuple[dict[str, Any], ...]

    def encode(self, args: Sequence[Any]) -> str:
        return "0x" + (self.selector + encode(list(self.inputs), list(args))).hex()

    def decode(self, data: str | bytes) -> Any:
        raw = HexBytes(data)
        values = tuple(
            checksummed(v, p)
            for v, p in zip(decode(list(self.outputs), raw), self.output_params, strict=True)
        )
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class AbiEvent:
    contract: str
    name: str
    topic0: bytes
    inputs: tuple[dict[str, Any], ...]

    def decode(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        indexed = [p for p in self.inputs if p.get("indexed")]
        plain = [p for p in self.inputs if not p.get("indexed")]
        values = dict(
            zip(
                [p["name"] for p in plain],
                decode([abi_type(p) for p in plain], data),
                strict=True,
            )
        )
        for param, topic in zip(indexed, topics[1:], strict=True):
            values[param["name"]] = decode([abi_type(param)], topic)[0]
        return {p["name"]: checksummed(values[p["name"]], p) for p in self.inputs}


@dataclass(frozen=True)
class DecodedEvent:
    """One log of a deployment contract, decoded."""

    contract: str
    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    transaction_hash: str
    log_index: int

    @property
    def key(self) -> str:
        return f"{self.contract}.{self.name}"


class Abis:
    """Selectors and event topics of the deployment's contracts, for encoding calls and
    decoding logs without web3's per-call overhead."""

    def __init__(self, addresses: Mapping[str, str]) -> None:
        self.addresses = dict(addresses)
        self.names_by_address = {a.lower(): n for n, a in addresses.items()}
        self.functions: dict[tuple[str, str, int], AbiFunction] = {}
        self.events: dict[tuple[str, bytes], AbiEvent] = {}
        for name in addresses:
            for entry in load_abi(name):
                inputs = tuple(abi_type(p) for p in entry.get("inputs", []))
                if entry["type"] == "function":
                    fn = AbiFunction(
                        name,
                        entry["name"],
                        function_signature_to_4byte_selector(
                            f"{entry['name']}({','.join(inputs)})"
                        ),
                        inputs,
                        tuple(abi_type(p) for p in entry.get("outputs", [])),
                        tuple(entry.get("outputs", [])),
                    )
                    self.functions.setdefault((name, entry["name"], len(inputs)), fn)
                elif entry["type"] == "event":
                    topic0 = keccak(text=f"{entry['name']}({','.join(inputs)})")
                    self.events[(name, topic0)] = AbiEvent(
                        name, entry["name"], topic0, tuple(entry["inputs"])
                    )

    def function(self, contract: str, name: str, nargs: int) -> AbiFunction:
        try:
            return self.functions[(contract, name, nargs)]
        except KeyError:
            raise KeyError(f"{contract} has no function {name} with {nargs} arguments") from None

    def calldata(self, contract: str, name: str, *args: Any) -> str:
        return self.function(contract, name, len(args)).encode(args)

    def decode_log(self, log: Mapping[str, Any]) -> DecodedEvent | None:
        """A log as a `DecodedEvent`, or None when no deployment contract emitted it."""
        address = str(log["address"])
        contract = self.names_by_address.get(address.lower())
        topics = [bytes(HexBytes(t)) for t in log["topics"]]
        if contract is None or not topics:
            return None
        event = self.events.get((contract, topics[0]))
        if event is None:
            return None
        return DecodedEvent(
            contract,
            event.name,
            event.decode(topics, bytes(HexBytes(log["data"]))),
            to_checksum_address(address),
            _int(log["blockNumber"]),
            HexBytes(log["transactionHash"]).to_0x_hex(),
            _int(log["logIndex"]),
        )

    def event_key(self, log: Mapping[str, Any]) -> str | None:
        """`Contract.Event` of a raw log, cheaply; None for other contracts' logs."""
        contract = self.names_by_address.get(str(log["address"]).lower())
        if contract is None or not log["topics"]:
            return None
        event = self.events.get((contract, bytes(HexBytes(log["topics"][0]))))
        return f"{contract}.{event.name}" if event else f"{contract}.?"


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes(HexBytes(value))
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}: {value!r}")
    return raw


class ChainDriver:
    """Drives a Buzzer deployment with real transactions (see the module docstring)."""

    def __init__(self, rpc_url: str, deployment: Mapping[str, Any], timeout: float = 60.0) -> None:
        self.rpc_url = rpc_url
        self.deployment = dict(deployment)
        self.chain_id = int(deployment["chain_id"])
        self.addresses = {
            name: to_checksum_address(address) for name, address in deployment["contracts"].items()
        }
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.rpc = Rpc(rpc_url, timeout=timeout)
        self.abis = Abis(self.addresses)
        self.contracts: dict[str, Contract] = {
            name: self.w3.eth.contract(address=address, abi=load_abi(name))
            for name, address in self.addresses.items()
        }
        self.timeout = timeout
        self.last_receipts: list[TxReceipt] = []
        self.trees: dict[bytes, PayoutTree] = {}  # every tree posted, by root
        self._activity_state: dict[str, Any] = {}

    # -- accounts, tokens, plumbing ---------------------------------------------------------

    def account(self, who: Who) -> str:
        """The address of dev account `who` (an index), or `who` itself (an address)."""
        if isinstance(who, int):
            return dev_account(who).address
        return to_checksum_address(who)

    def key(self, index: int) -> LocalAccount:
        return dev_account(index)

    @property
    def usdc(self) -> str:
        return self.addresses["TestUSDC"]

    def token(self, token: str | None) -> str:
        if token is None or token.lower() in ("eth", "0x0", ZERO_ADDRESS):
            return ZERO_ADDRESS
        if token.lower() == "usdc":
            return self.usdc
        return to_checksum_address(token)

    def contract(self, name: str) -> Contract:
        return self.contracts[name]

    def call(self, contract: str, function: str, *args: Any, block: int | str = "latest") -> Any:
        fn = self.abis.function(contract, function, len(args))
        data = self.rpc.call(
            "eth_call",
            {"to": self.addresses[contract], "data": fn.encode(args)},
            hex(block) if isinstance(block, int) else block,
        )
        return fn.decode(data)

    def block(self, number: int | str = "latest") -> dict[str, Any]:
        tag = hex(number) if isinstance(number, int) else number
        block: dict[str, Any] = self.rpc.call("eth_getBlockByNumber", tag, False)
        return block

    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def timestamp(self) -> int:
        return int(self.block()["timestamp"], 16)

    def transact(
        self, contract: str, function: str, *args: Any, sender: int, value: int = 0
    ) -> TxReceipt:
        """Sign `contract.function(*args)` as dev account `sender`, send it, wait for and
        return its receipt (raising `TransactionFailed` if it reverted)."""
        account = dev_account(sender)
        fn = self.contracts[contract].functions[function](*args)
        params = {
            "from": account.address,
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
            "value": value,
            "chainId": self.chain_id,
        }
        tx = fn.build_transaction(cast(TxParams, params))
        signed = account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=self.timeout, poll_latency=0.01
        )
        self.last_receipts.append(receipt)
        if receipt["status"] != 1:
            raise TransactionFailed(f"{contract}.{function}{args!r} reverted: {tx_hash.hex()}")
        return receipt

    def tx_request(
        self, contract: str, function: str, *args: Any, sender: int, value: int = 0
    ) -> dict[str, Any]:
        """An unsigned JSON transaction from dev account `sender` (anvil signs it), e.g.
        for `reorg(depth, [(tx, block_offset)])`. Its gas limit is fixed: anvil's own estimate for
        a reorg's transactions fell short (a publisher registration ran out of gas)."""
        return {
            "from": self.account(sender),
            "to": self.addresses[contract],
            "data": self.abis.calldata(contract, function, *args),
            "value": hex(value),
            "gas": hex(TX_REQUEST_GAS),
        }

    def events(self, receipt: Mapping[str, Any]) -> list[DecodedEvent]:
        """The deployment contracts' logs of a receipt, decoded, in log order."""
        decoded = (self.abis.decode_log(log) for log in receipt["logs"])
        return [event for event in decoded if event is not None]

    def logs(self, from_block: int = 0, to_block: int | str = "latest") -> list[DecodedEvent]:
        """Every deployment contract log in a block range (one eth_getLogs), decoded."""
        logs = self.rpc.call(
            "eth_getLogs",
            {
                "fromBlock": hex(from_block),
                "toBlock": hex(to_block) if isinstance(to_block, int) else to_block,
                "address": list(self.addresses.values()),
            },
        )
        decoded = (self.abis.decode_log(log) for log in logs)
        return [event for event in decoded if event is not None]

    # -- PublisherRegistry -------------------------------------------------------------------

    def register_publisher(
        self, user_index: int, pub_id: str, payment_wallet: Who | None = None
    ) -> TxReceipt:
        wallet = self.account(user_index if payment_wallet is None else payment_wallet)
        return self.transact("PublisherRegistry", "register", pub_id, wallet, sender=user_index)

    def update_payment_wallet(self, user_index: int, new_wallet: Who) -> TxReceipt:
        return self.transact(
            "PublisherRegistry",
            "update_payment_wallet",
            self.account(new_wallet),
            sender=user_index,
        )

    def set_quality_score(self, publisher: Who, score: int) -> TxReceipt:
        return self.transact(
            "PublisherRegistry", "set_quality_score", self.account(publisher), score, sender=ORACLE
        )

    def set_domain_verified(self, publisher: Who, domain: str | bytes) -> TxReceipt:
        """`domain` is a domain name (hashed lower-case, as the oracle does) or a bytes32."""
        if isinstance(domain, str) and not domain.startswith("0x"):
            domain_hash = keccak(text=domain.lower())
        else:
            domain_hash = _bytes32(domain)
        return self.transact(
            "PublisherRegistry",
            "set_domain_verified",
            self.account(publisher),
            domain_hash,
            sender=ORACLE,
        )

    def set_suspended(self, publisher: Who, suspended: bool = True) -> TxReceipt:
        return self.transact(
            "PublisherRegistry",
            "set_suspended",
            self.account(publisher),
            suspended,
            sender=GUARDIAN,
        )

    # -- CampaignRegistry --------------------------------------------------------------------

    def register_campaign(
        self,
        user_index: int,
        token: str | None = "usdc",
        bid_model: int = BID_CPM,
        bid: int = 2 * USDC,
        metadata_hash: bytes | str | None = None,
        max_spend_per_epoch: int | None = None,
    ) -> int:
        """Register a campaign; return its id (the receipt is `last_receipts[-1]`). The max
        spend per epoch defaults to 1,000 USDC (or 1 ETH)."""
        if metadata_hash is None:
            metadata_hash = keccak(os.urandom(32))
        receipt = self.transact(
            "CampaignRegistry",
            "register",
            self.token(token),
            bid_model,
            bid,
            _bytes32(metadata_hash),
            max_spend_per_epoch or (10**18 if self.token(token) == ZERO_ADDRESS else 1_000 * USDC),
            sender=user_index,
        )
        for event in self.events(receipt):
            if event.name == "CampaignRegistered":
                return int(event.args["campaign_id"])
        raise AssertionError(f"no CampaignRegistered event in {receipt['transactionHash']!r}")

    def update_campaign_status(self, user_index: int, campaign_id: int, status: int) -> TxReceipt:
        return self.transact(
            "CampaignRegistry", "update_status", campaign_id, status, sender=user_index
        )

    def update_campaign_metadata(
        self, user_index: int, campaign_id: int, bid: int, metadata_hash: bytes | str
    ) -> TxReceipt:
        return self.transact(
            "CampaignRegistry",
            "update_metadata",
            campaign_id,
            bid,
            _bytes32(metadata_hash),
            sender=user_index,
        )

    def set_max_spend_per_epoch(self, user_index: int, campaign_id: int, new_max: int) -> TxReceipt:
        return self.transact(
            "CampaignRegistry", "set_max_spend_per_epoch", campaign_id, new_max, sender=user_index
        )

    def campaign_token(self, campaign_id: int) -> str:
        return to_checksum_address(self.call("CampaignRegistry", "token_of", campaign_id))

    # -- TestUSDC ----------------------------------------------------------------------------

    def mint_usdc(self, to: Who, amount: int) -> TxReceipt:
        return self.transact("TestUSDC", "mint", self.account(to), amount, sender=ADMIN)

    def usdc_balance(self, who: Who) -> int:
        return int(self.call("TestUSDC", "balanceOf", self.account(who)))

    @cached_property
    def usdc_domain(self) -> dict[str, Any]:
        """TestUSDC's EIP-712 domain, as the contract reports it (EIP-5267)."""
        _, name, version, chain_id, verifying_contract, _, _ = self.call("TestUSDC", "eip712Domain")
        return {
            "name": name,
            "version": version,
            "chainId": int(chain_id),
            "verifyingContract": to_checksum_address(verifying_contract),
        }

    def transfer_authorization(
        self,
        payer: Who,
        pay_to: Who,
        amount: int,
        *,
        nonce: bytes | None = None,
        valid_after: int = 0,
        valid_before: int | None = None,
    ) -> dict[str, Any]:
        """The EIP-712 typed data of an EIP-3009 `TransferWithAuthorization` (for signing
        with `eth_account` or anvil's `eth_signTypedData_v4`)."""
        if valid_before is None:
            valid_before = self.timestamp() + 3_600
        return {
            "types": {
                "EIP712Domain": EIP712_DOMAIN_TYPES,
                "TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION_TYPES,
            },
            "primaryType": "TransferWithAuthorization",
            "domain": self.usdc_domain,
            "message": {
                "from": self.account(payer),
                "to": self.account(pay_to),
                "value": amount,
                "validAfter": valid_after,
                "validBefore": valid_before,
                "nonce": "0x" + (nonce or os.urandom(32)).hex(),
            },
        }

    def sign_transfer_authorization(self, payer_index: int, typed_data: dict[str, Any]) -> bytes:
        """Sign an authorization with the payer's key (eth-account); 65 bytes r‖s‖v."""
        signed = dev_account(payer_index).sign_typed_data(full_message=typed_data)
        return bytes(signed.signature)

    def x402_transfer(
        self,
        payer_index: int,
        pay_to: Who,
        amount: int,
        *,
        nonce: bytes | None = None,
        valid_after: int = 0,
        valid_before: int | None = None,
        submitter: int = ADMIN,
    ) -> TxReceipt:
        """What an x402 facilitator does: the payer signs an EIP-3009 authorization, the
        facilitator (`submitter`) sends `transferWithAuthorization` with it."""
        data = self.transfer_authorization(
            payer_index,
            pay_to,
            amount,
            nonce=nonce,
            valid_after=valid_after,
            valid_before=valid_before,
        )
        signature = self.sign_transfer_authorization(payer_index, data)
        return self.submit_authorization(data["message"], signature, submitter)

    def submit_authorization(
        self, message: Mapping[str, Any], signature: bytes, submitter: int = ADMIN
    ) -> TxReceipt:
        """Send `transferWithAuthorization` for a signed authorization (`message` as in the
        typed data or an x402 payload: from, to, value, validAfter, validBefore, nonce)."""
        return self.transact(
            "TestUSDC",
            "transferWithAuthorization",
            message["from"],
            message["to"],
            int(message["value"]),
            int(message["validAfter"]),
            int(message["validBefore"]),
            _bytes32(message["nonce"]),
            signature[64],
            signature[:32],
            signature[32:64],
            sender=submitter,
        )

    # -- PaymentEscrow -----------------------------------------------------------------------

    def deposit(
        self, user_index: int, campaign_id: int, amount: int, token: str | None = None
    ) -> TxReceipt:
        """Fund a campaign: `approve` + `deposit` for a token (two transactions, the deposit's
        receipt is returned), `deposit` with value for ETH. `token` defaults to the
        campaign's."""
        token_address = self.campaign_token(campaign_id) if token is None else self.token(token)
        if token_address == ZERO_ADDRESS:
            return self.transact(
                "PaymentEscrow",
                "deposit",
                campaign_id,
                amount,
                token_address,
                sender=user_index,
                value=amount,
            )
        if token_address == self.addresses.get("TestUSDC"):
            escrow = self.addresses["PaymentEscrow"]
            self.transact("TestUSDC", "approve", escrow, amount, sender=user_index)
        else:
            self._approve_any(token_address, amount, user_index)
        return self.transact(
            "PaymentEscrow", "deposit", campaign_id, amount, token_address, sender=user_index
        )

    def _approve_any(self, token: str, amount: int, user_index: int) -> TxReceipt:
        erc20 = self.w3.eth.contract(address=to_checksum_address(token), abi=load_abi("TestUSDC"))
        account = dev_account(user_index)
        tx = erc20.functions.approve(self.addresses["PaymentEscrow"], amount).build_transaction(
            {
                "from": account.address,
                "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                "chainId": self.chain_id,
            }
        )
        signed = account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        self.last_receipts.append(receipt)
        return receipt

    def request_withdraw(
        self, user_index: int, campaign_id: int, amount: int, token: str | None = None
    ) -> TxReceipt:
        token_address = self.campaign_token(campaign_id) if token is None else self.token(token)
        return self.transact(
            "PaymentEscrow",
            "request_withdraw",
            campaign_id,
            token_address,
            amount,
            sender=user_index,
        )

    def cancel_withdraw(
        self, user_index: int, campaign_id: int, token: str | None = None
    ) -> TxReceipt:
        token_address = self.campaign_token(campaign_id) if token is None else self.token(token)
        return self.transact(
            "PaymentEscrow", "cancel_withdraw", campaign_id, token_address, sender=user_index
        )

    def withdraw(self, user_index: int, campaign_id: int, token: str | None = None) -> TxReceipt:
        token_address = self.campaign_token(campaign_id) if token is None else self.token(token)
        return self.transact(
            "PaymentEscrow", "withdraw", campaign_id, token_address, sender=user_index
        )

    def spend_batch(
        self, epoch: int, campaign_ids: Sequence[int], amounts: Sequence[int]
    ) -> TxReceipt:
        """Spend `epoch`, which must have ended (see `end_epoch`)."""
        return self.transact(
            "PaymentEscrow",
            "spend_batch",
            epoch,
            list(campaign_ids),
            list(amounts),
            sender=SETTLER,
        )

    # -- PublisherPayout ---------------------------------------------------------------------

    def payout_tree(self, leaves: Iterable[Any]) -> PayoutTree:
        """A `PayoutTree` for this deployment's payout contract."""
        return PayoutTree(self.chain_id, self.addresses["PublisherPayout"], leaves)

    def post_root(
        self, tree: PayoutTree, root_id: int | None = None, artefact_uri: str | None = None
    ) -> TxReceipt:
        """Post `tree`'s root as `root_id` (default: the next one), telling the contract every
        token's total in it. No other root may be pending."""
        if root_id is None:
            root_id = int(self.call("PublisherPayout", "latest_root_id")) + 1
        totals = tree.totals()
        receipt = self.transact(
            "PublisherPayout",
            "post_root",
            root_id,
            tree.root,
            list(totals),
            list(totals.values()),
            artefact_uri if artefact_uri is not None else f"file://root-{root_id}.json",
            sender=SETTLER,
        )
        self.trees[tree.root] = tree
        return receipt

    def revoke_root(self, root_id: int) -> TxReceipt:
        return self.transact("PublisherPayout", "revoke_root", root_id, sender=GUARDIAN)

    def claim(
        self,
        tree: PayoutTree,
        account: Who,
        token: str | None,
        sender: int | None = None,
    ) -> TxReceipt:
        """Claim `account`'s leaf of `tree`, which must be the current root's. Anyone may send
        it: `sender` defaults to the account itself when it is a dev account, else the admin."""
        address = self.account(account)
        token_address = self.token(token)
        leaf = tree.leaf_for(address, token_address)
        if sender is None:
            sender = account if isinstance(account, int) else self._dev_index(address, ADMIN)
        return self.transact(
            "PublisherPayout",
            "claim",
            address,
            token_address,
            leaf.cumulative_amount,
            tree.proof(address, token_address),
            sender=sender,
        )

    def _dev_index(self, address: str, default: int) -> int:
        for index in range(64):
            if dev_account(index).address == address:
                return index
        return default

    # -- time and blocks ---------------------------------------------------------------------

    def increase_time(self, seconds: int) -> int:
        """Move the clock forward and mine a block; return its timestamp."""
        self.rpc.call("evm_increaseTime", int(seconds))
        self.rpc.call("evm_mine")
        return self.timestamp()

    def end_epoch(self, epoch: int) -> int:
        """Move the clock past the end of spend epoch `epoch` if it is not there yet (a spend
        needs its epoch ended); return the head's timestamp."""
        end = int(self.call("CampaignRegistry", "epoch_end", epoch))
        now = self.timestamp()
        return self.increase_time(end - now) if now < end else now

    def current_epoch(self) -> int:
        return int(self.call("CampaignRegistry", "current_epoch"))

    def mine(self, n: int = 1) -> int:
        """Mine `n` empty blocks; return the new head's number."""
        self.rpc.call("anvil_mine", hex(n))
        return self.block_number()

    def reorg(
        self, depth: int, txs: Sequence[tuple[Mapping[str, Any] | bytes | str, int]] = ()
    ) -> int:
        """`anvil_reorg`: replace the last `depth` blocks with as many new ones holding `txs`,
        given as (transaction, block offset within the new blocks) pairs — a JSON transaction
        from a dev account (see `tx_request`) or raw signed bytes. The replaced blocks'
        transactions are dropped. Returns the head's number (unchanged by a reorg).

        Snapshots taken before a reorg cannot be reverted to afterwards."""
        pairs = [
            [("0x" + bytes(tx).hex()) if isinstance(tx, bytes | bytearray) else tx, offset]
            for tx, offset in txs
        ]
        self.rpc.call("anvil_reorg", depth, pairs)
        return self.block_number()

    # -- bulk --------------------------------------------------------------------------------

    def generate_activity(self, n_events: int, seed: int = 0, **options: Any) -> ActivityReport:
        """At least `n_events` contract events from a random but valid mix of every action
        (see `tests/support/activity.py` for the options); returns what was generated."""
        from tests.support.activity import ActivityGenerator

        return ActivityGenerator(self, seed, **options).run(n_events)

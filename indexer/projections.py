"""Projections: one reducer per (contract, event), folding canonical events into rows.

A projection row is a pure function of the canonical events of its key, applied in chain
order. Forward indexing folds new events onto the stored row; a reorg deletes the rows of
every key an orphaned event touched and folds them again from the canonical events. A full
rebuild is the same fold from nothing, so all three give identical tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import SQLModel

from chain.contracts import CORE_CONTRACTS
from chain.decode import Event
from indexer import models

Row = dict[str, Any]
Batch = Mapping[tuple[str, int], Event]
Handler = Callable[[Row | None, Event, Batch], Row | None]
Key = tuple[Any, ...]


@dataclass
class Projection:
    """A table of rows keyed by `key_fields`, built by `handlers` from the events they name."""

    model: type[SQLModel]
    key_fields: tuple[str, ...]
    key: Callable[[Event], Key]
    handlers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    # a refold reads every handled event, not only those of the orphaned events' subjects
    scan_all: bool = False

    @property
    def table_name(self) -> str:
        return str(self.model.__tablename__)

    def on(self, contract: str, event: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.handlers[(contract, event)] = handler
            return handler

        return register

    def handles(self, event: Event) -> bool:
        return (event.contract, event.name) in self.handlers

    def apply(self, row: Row | None, event: Event, batch: Batch) -> Row | None:
        return self.handlers[(event.contract, event.name)](row, event, batch)


def _by_arg(name: str, convert: Callable[[Any], Any] = lambda v: v) -> Callable[[Event], Key]:
    return lambda event: (convert(event.args[name]),)


def _event_key(event: Event) -> Key:
    return (event.tx_hash, event.log_index)


def _require(row: Row | None, event: Event) -> Row:
    if row is None:
        raise ProjectionError(f"{event.contract}.{event.name} at {event.tx_hash} has no prior row")
    return row


class ProjectionError(Exception):
    """An event arrived that its projection cannot apply (a gap in the event history)."""


# ---------------------------------------------------------------- publishers

publishers = Projection(models.Publisher, ("wallet",), _by_arg("publisher"))


@publishers.on("PublisherRegistry", "PublisherRegistered")
def _registered(row: Row | None, e: Event, _: Batch) -> Row:
    return {
        "wallet": e.args["publisher"],
        "pub_id": e.args["pub_id"],
        "payment_wallet": e.args["payment_wallet"],
        "quality_score": 0,
        "domain_hash": None,
        "suspended": False,
        "registered_block": e.block_number,
    }


@publishers.on("PublisherRegistry", "PaymentWalletUpdated")
def _wallet(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "payment_wallet": e.args["new_wallet"]}


@publishers.on("PublisherRegistry", "QualityScoreSet")
def _quality(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "quality_score": e.args["score"]}


@publishers.on("PublisherRegistry", "DomainVerified")
def _domain(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "domain_hash": e.args["domain_hash"]}


@publishers.on("PublisherRegistry", "PublisherSuspended")
def _suspended(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "suspended": e.args["suspended"]}


# ---------------------------------------------------------------- campaigns

campaigns = Projection(models.Campaign, ("campaign_id",), _by_arg("campaign_id"))


@campaigns.on("CampaignRegistry", "CampaignRegistered")
def _campaign(row: Row | None, e: Event, _: Batch) -> Row:
    return {
        "campaign_id": e.args["campaign_id"],
        "advertiser": e.args["advertiser"],
        "token": e.args["token"],
        "bid_model": e.args["bid_model"],
        "bid": e.args["bid"],
        "metadata_hash": e.args["metadata_hash"],
        "status": 1,
        "max_spend_per_epoch": e.args["max_spend_per_epoch"],
        "max_spend_effective_epoch": 0,
        "previous_max_spend_per_epoch": e.args["max_spend_per_epoch"],
        "registered_block": e.block_number,
    }


@campaigns.on("CampaignRegistry", "CampaignStatusUpdated")
def _status(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "status": e.args["status"]}


@campaigns.on("CampaignRegistry", "CampaignMetadataUpdated")
def _metadata(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "bid": e.args["bid"], "metadata_hash": e.args["metadata_hash"]}


@campaigns.on("CampaignRegistry", "MaxSpendPerEpochSet")
def _max_spend(row: Row | None, e: Event, _: Batch) -> Row:
    current = _require(row, e)
    effective = e.args["effective_epoch"]
    # a second change within one epoch replaces the pending one, as the registry does
    in_force_before = (
        current["previous_max_spend_per_epoch"]
        if current["max_spend_effective_epoch"] == effective
        else current["max_spend_per_epoch"]
    )
    return {
        **current,
        "max_spend_per_epoch": e.args["max_spend"],
        "max_spend_effective_epoch": effective,
        "previous_max_spend_per_epoch": in_force_before,
    }


# ---------------------------------------------------------------- escrow

escrow_balances = Projection(
    models.EscrowBalance,
    ("campaign_id", "token"),
    lambda e: (
        e.args["campaign_id"],
        e.args["token"],
    ),
)


def _balance_row(row: Row | None, e: Event) -> Row:
    return row or {
        "campaign_id": e.args["campaign_id"],
        "token": e.args["token"],
        "deposited": 0,
        "withdrawn": 0,
        "spent": 0,
        "balance": 0,
        "last_spent_epoch": 0,
    }


def _with_balance(row: Row) -> Row:
    row["balance"] = int(row["deposited"]) - int(row["withdrawn"]) - int(row["spent"])
    return row


@escrow_balances.on("PaymentEscrow", "Deposited")
def _deposited(row: Row | None, e: Event, _: Batch) -> Row:
    current = _balance_row(row, e)
    return _with_balance({**current, "deposited": int(current["deposited"]) + e.args["amount"]})


@escrow_balances.on("PaymentEscrow", "Withdrawn")
def _withdrawn(row: Row | None, e: Event, _: Batch) -> Row:
    current = _balance_row(row, e)
    return _with_balance({**current, "withdrawn": int(current["withdrawn"]) + e.args["amount"]})


@escrow_balances.on("PaymentEscrow", "Spent")
def _spent(row: Row | None, e: Event, _: Batch) -> Row:
    current = _balance_row(row, e)
    return _with_balance(
        {
            **current,
            "spent": int(current["spent"]) + e.args["charged"],
            "last_spent_epoch": e.args["epoch"],
        }
    )


withdraw_requests = Projection(models.WithdrawRequest, ("campaign_id",), _by_arg("campaign_id"))


@withdraw_requests.on("PaymentEscrow", "WithdrawRequested")
def _requested(row: Row | None, e: Event, _: Batch) -> Row:
    return {
        "campaign_id": e.args["campaign_id"],
        "token": e.args["token"],
        "amount": e.args["amount"],
        "available_at": e.args["available_at"],
        "status": "pending",
        "paid": 0,
    }


@withdraw_requests.on("PaymentEscrow", "WithdrawCancelled")
def _cancelled(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "status": "cancelled"}


@withdraw_requests.on("PaymentEscrow", "Withdrawn")
def _paid(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "status": "withdrawn", "paid": e.args["amount"]}


epoch_spends = Projection(
    models.EpochSpend, ("epoch", "campaign_id"), lambda e: (e.args["epoch"], e.args["campaign_id"])
)


@epoch_spends.on("PaymentEscrow", "Spent")
def _epoch_spend(row: Row | None, e: Event, _: Batch) -> Row:
    return {
        "epoch": e.args["epoch"],
        "campaign_id": e.args["campaign_id"],
        "token": e.args["token"],
        "asked": e.args["asked"],
        "charged": e.args["charged"],
        "publisher_share": e.args["publisher_share"],
        "fee": e.args["fee"],
        "block_number": e.block_number,
    }


epoch_spend_skips = Projection(models.EpochSpendSkip, ("tx_hash", "log_index"), _event_key)


@epoch_spend_skips.on("PaymentEscrow", "SpendSkipped")
def _skipped(row: Row | None, e: Event, _: Batch) -> Row:
    return {
        "tx_hash": e.tx_hash,
        "log_index": e.log_index,
        "epoch": e.args["epoch"],
        "campaign_id": e.args["campaign_id"],
        "asked": e.args["asked"],
        "reason": e.args["reason"],
        "block_number": e.block_number,
    }


# ---------------------------------------------------------------- payout

payout_funding = Projection(models.PayoutFunding, ("token",), _by_arg("token"))


@payout_funding.on("PublisherPayout", "TokenRegistered")
def _token_registered(row: Row | None, e: Event, _: Batch) -> Row:
    return {"token": e.args["token"], "registered": True, "total_funded": 0}


@payout_funding.on("PublisherPayout", "Funded")
def _funded(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "total_funded": e.args["total_funded"]}


# Root events name no entity the raw rows' subject picks up, and roots are few: a refold
# reads all of them.
payout_roots = Projection(models.PayoutRoot, ("root_id",), _by_arg("root_id"), scan_all=True)


@payout_roots.on("PublisherPayout", "RootPosted")
def _root(row: Row | None, e: Event, _: Batch) -> Row:
    totals = dict(zip(e.args["tokens"], (str(t) for t in e.args["cumulative_totals"]), strict=True))
    return {
        "root_id": e.args["root_id"],
        "root": e.args["root"],
        "claimable_at": e.args["claimable_at"],
        "totals": totals,
        "artefact_uri": e.args["artefact_uri"],
        "revoked": False,
        "posted_block": e.block_number,
    }


@payout_roots.on("PublisherPayout", "RootRevoked")
def _revoked(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "revoked": True}


@payout_roots.on("PublisherPayout", "RootMaturityDelayed")
def _delayed(row: Row | None, e: Event, _: Batch) -> Row:
    return {**_require(row, e), "claimable_at": e.args["claimable_at"]}


payout_claims = Projection(models.PayoutClaim, ("tx_hash", "log_index"), _event_key)


@payout_claims.on("PublisherPayout", "Claimed")
def _claimed(row: Row | None, e: Event, _: Batch) -> Row:
    return {
        "tx_hash": e.tx_hash,
        "log_index": e.log_index,
        "root_id": e.args["root_id"],
        "account": e.args["account"],
        "token": e.args["token"],
        "recipient": e.args["recipient"],
        "amount": e.args["amount"],
        "cumulative_amount": e.args["cumulative_amount"],
        "block_number": e.block_number,
    }


# ---------------------------------------------------------------- configuration

CONFIG_EVENTS = (
    ("CampaignRegistry", "EpochClockSet"),
    ("PaymentEscrow", "EscrowConfigured"),
    ("PaymentEscrow", "SettlementGraceUpdated"),
    ("PaymentEscrow", "WithdrawDelayUpdated"),
    ("PaymentEscrow", "TreasuryUpdated"),
    ("PublisherPayout", "ChallengePeriodUpdated"),
    *((name, "AdminTransferred") for name in CORE_CONTRACTS),
)

chain_config = Projection(
    models.ChainConfig, ("contract", "event"), lambda e: (e.contract, e.name), scan_all=True
)


def _setting(row: Row | None, e: Event, _: Batch) -> Row:
    return {"contract": e.contract, "event": e.name, "args": e.args, "block_number": e.block_number}


for _contract, _event in CONFIG_EVENTS:
    chain_config.on(_contract, _event)(_setting)


# ---------------------------------------------------------------- x402 (EIP-3009 on the token)

x402_payments = Projection(
    models.X402Payment, ("payer", "nonce"), lambda e: (e.args["authorizer"], e.args["nonce"])
)


@x402_payments.on("PaymentToken", "AuthorizationUsed")
def _authorization(row: Row | None, e: Event, batch: Batch) -> Row | None:
    # the transfer the authorization paid for is the token's next log in the same transaction
    transfer = batch.get((e.tx_hash, e.log_index + 1))
    if transfer is None or transfer.name != "Transfer" or transfer.address != e.address:
        return None
    return {
        "payer": e.args["authorizer"],
        "nonce": e.args["nonce"],
        "pay_to": transfer.args["receiver"],
        "amount": transfer.args["value"],
        "token": e.address,
        "tx_hash": e.tx_hash,
        "block_number": e.block_number,
    }


ALL: tuple[Projection, ...] = (
    publishers,
    campaigns,
    escrow_balances,
    withdraw_requests,
    epoch_spends,
    epoch_spend_skips,
    payout_funding,
    payout_roots,
    payout_claims,
    x402_payments,
    chain_config,
)

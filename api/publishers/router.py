"""`/api/v1/publishers`: the signed-in wallet's own publisher account."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.core.chain import TxData
from api.core.db import SessionDep
from api.deps import SettingsDep, WalletDep
from api.publishers import service
from api.publishers.schemas import PublisherCreate, PublisherPublic, PublisherUpdate, RegistrationIn

router = APIRouter(prefix="/api/v1/publishers", tags=["publishers"])


@router.post("", response_model=PublisherPublic, status_code=status.HTTP_201_CREATED)
def create_publisher(
    body: PublisherCreate, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> PublisherPublic:
    """Create the publisher profile of the signed-in wallet."""
    return service.create(session, settings.chain_id, wallet, body)


@router.get("/me", response_model=PublisherPublic)
def read_publisher(
    wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> PublisherPublic:
    """The wallet's profile and its on-chain registration as indexed."""
    return service.read(session, settings.chain_id, wallet)


@router.patch("/me", response_model=PublisherPublic)
def update_publisher(
    body: PublisherUpdate, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> PublisherPublic:
    return service.update(session, settings.chain_id, wallet, body)


@router.post("/me/registration-tx", response_model=TxData)
def registration_tx(
    body: RegistrationIn, wallet: WalletDep, session: SessionDep, settings: SettingsDep
) -> TxData:
    """The transaction that registers the wallet on-chain, ready for the wallet to sign.
    The profile shows `onchain.registered` once the indexer has seen the event."""
    return service.registration_tx(session, settings.chain_id, wallet, body)

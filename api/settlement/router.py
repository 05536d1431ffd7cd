"""Public settlement routes: every epoch's outcome, every root, and the artefacts that let
anyone recompute a root (`python -m api.settlement verify --artefact URL`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from sqlalchemy import text

from api.core.db import SessionDep
from api.core.errors import NotFound
from api.deps import SettingsDep
from api.settlement.schemas import EpochPublic, RootPublic
from api.settlement.service import epoch_rows

router = APIRouter(prefix="/api/v1/settlement", tags=["settlement"])
RootId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the payout's root id")]


@router.get("/epochs", response_model=list[EpochPublic])
def list_epochs(
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="epochs before this one")
    ] = None,
) -> list[EpochPublic]:
    """Settled and settling epochs, newest first."""
    rows = epoch_rows(session.connection(), settings.chain_id, limit, before)
    return [EpochPublic(**{k: row[k] for k in EpochPublic.model_fields}) for row in rows]


@router.get("/roots/{root_id}", response_model=RootPublic)
def read_root(root_id: RootId, session: SessionDep, settings: SettingsDep) -> RootPublic:
    row = session.execute(
        text(
            "SELECT s.*, r.status AS onchain_status, r.claimable_at FROM settlement_roots s"
            " LEFT JOIN payout_root_status r ON r.chain_id = s.chain_id AND r.root_id = s.root_id"
            " WHERE s.chain_id = :chain AND s.root_id = :root_id"
        ),
        {"chain": settings.chain_id, "root_id": root_id},
    ).first()
    if row is None:
        raise NotFound(f"no root {root_id} was built on chain {settings.chain_id}", code="no_root")
    return RootPublic(
        root_id=row.root_id,
        root=row.root,
        state=row.state,
        onchain_status=row.onchain_status,
        previous_root_id=row.previous_root_id,
        epochs=list(row.epochs),
        totals={token: int(total) for token, total in row.totals.items()},
        leaves=row.leaves,
        claimable_at=row.claimable_at,
        artefact_uri=row.artefact_uri,
    )


@router.get("/artefacts/{chain_id}/{root_id}.json", response_class=FileResponse)
def read_artefact(
    chain_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)], root_id: RootId, settings: SettingsDep
) -> FileResponse:
    """The public artefact of a root: leaves, allocations, the Spent events it rests on and
    the OpenZeppelin `standard-v1` tree dump."""
    path = Path(settings.settlement_artefact_dir) / str(chain_id) / f"{root_id}.json"
    if not path.is_file():
        raise NotFound(f"no artefact for root {root_id} on chain {chain_id}", code="no_artefact")
    return FileResponse(path, media_type="application/json")

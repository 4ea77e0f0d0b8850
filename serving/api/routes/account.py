"""The calling key."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import KeyDep
from serving.api.errors import errors
from serving.api.schemas import MeOut

router = APIRouter(tags=["account"])


@router.get("/v1/me", responses=errors())
def me(key: KeyDep) -> MeOut:
    """The calling key: id, name, role and groups."""
    return MeOut(key_id=key.id, name=key.name, role=key.role, groups=list(key.groups))

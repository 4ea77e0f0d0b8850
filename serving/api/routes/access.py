"""Access rules (admin): who may read what, changed and audited."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backends.sql.registry import iso_time
from ingest.access import Change
from serving.api.deps import AdminDep, ServicesDep
from serving.api.errors import errors
from serving.api.jobs import names
from serving.api.schemas import (
    AccessChangeOut,
    AccessHistoryOut,
    AccessRuleOut,
    AccessRuleRequest,
    AccessRulesOut,
)

router = APIRouter(tags=["access"])


def _change(change: Change) -> AccessChangeOut:
    return AccessChangeOut(
        prefix=change.prefix,
        before=list(change.before) if change.before is not None else None,
        after=list(change.after) if change.after is not None else None,
        documents=change.documents,
    )


@router.get("/v1/access/rules", responses=errors(403))
def list_access_rules(services: ServicesDep, _key: AdminDep) -> AccessRulesOut:
    """Every access rule (prefix -> groups), with the documents each decides."""
    access = services.ingestor.access
    rules = [
        AccessRuleOut(
            prefix=r.prefix,
            groups=list(r.groups),
            origin=r.origin,
            updated_at=iso_time(r.updated_at),
            updated_by=r.updated_by,
            documents=documents,
        )
        for r, documents in access.listing()
    ]
    return AccessRulesOut(rules=rules, pending=len(access.pending()))


@router.put("/v1/access/rules", responses=errors(400, 403, 422))
def set_access_rule(
    body: AccessRuleRequest, services: ServicesDep, key: AdminDep
) -> AccessChangeOut:
    """Let ``groups`` read everything under ``path``: recorded (with who changed it) and
    applied to the registered documents at once, without re-embedding."""
    groups = names(body.groups, "groups") or []
    return _change(services.ingestor.access.set_rule(body.path, groups, key.principal.name))


@router.delete("/v1/access/rules", responses=errors(400, 403, 404, 422))
def remove_access_rule(
    services: ServicesDep,
    key: AdminDep,
    path: Annotated[str, Query(min_length=1, max_length=2048, description="The rule's path.")],
) -> AccessChangeOut:
    """Remove the rule at ``path``: its documents fall back to the next rule up, or to
    admins only."""
    return _change(services.ingestor.access.remove_rule(path, key.principal.name))


@router.get("/v1/access/history", responses=errors(403))
def access_history(services: ServicesDep, _key: AdminDep) -> AccessHistoryOut:
    """The latest 100 rule changes, newest first: who, when, before and after."""
    return AccessHistoryOut(changes=services.container.registry.access_history())

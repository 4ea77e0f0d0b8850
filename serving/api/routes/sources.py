"""Documents any key may read: a cited document's chunks and its original file."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from backends.sql.registry import RegisteredDocument
from core.errors import NotFoundError
from core.types import Principal
from serving.api.deps import KeyDep, ServicesDep
from serving.api.errors import errors
from serving.api.originals import attachment, chunks_of, open_original
from serving.api.schemas import SourceOut
from serving.api.services import Services

router = APIRouter(tags=["documents"])


def readable(services: Services, principal: Principal, doc_id: str) -> RegisteredDocument:
    """The document if the principal may read it; otherwise 'not found' (never revealing
    that a document outside their groups exists)."""
    record = services.container.registry.get(doc_id)
    if record is None or not (
        principal.admin or set(record.document.groups) & set(principal.groups)
    ):
        raise NotFoundError(f"no document {doc_id} that you can access")
    return record


@router.get("/v1/sources/{doc_id}", responses=errors(404, 422))
def source(doc_id: str, services: ServicesDep, key: KeyDep) -> SourceOut:
    """A document the key may read: metadata and its chunks (to show a cited passage).
    Only chunks inside the key's groups are returned, even while a job rewrites them."""
    principal = key.principal
    record = readable(services, principal, doc_id)
    scope = None if principal.admin else principal.groups
    return SourceOut.of(record, services.container.store.chunks(doc_id, groups=scope))


@router.get(
    "/v1/sources/{doc_id}/file",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The original file, exactly as it was ingested.",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **errors(404, 409, 422),
    },
)
def source_file(doc_id: str, services: ServicesDep, key: KeyDep) -> StreamingResponse:
    """Download the original file of a document the key may read: the bytes that were
    ingested (checked against their recorded SHA-256; a file changed since is a 409)."""
    record = readable(services, key.principal, doc_id)
    max_bytes = int(services.settings.ingest.max_file_mb * 1024 * 1024)
    spool = open_original(record, max_bytes)
    return StreamingResponse(
        chunks_of(spool),
        media_type=record.document.mime_type or "application/octet-stream",
        headers={
            "Content-Disposition": attachment(Path(record.document.source).name),
            "X-Content-Type-Options": "nosniff",
        },
    )

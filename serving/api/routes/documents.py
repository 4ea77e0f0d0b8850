"""The registry for admins: documents, uploads and server-path ingestion jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from backends.sql.registry import RegisteredDocument
from core.errors import InputError, NotFoundError
from core.runtime import private_dir
from serving.api.deps import AdminDep, ServicesDep
from serving.api.errors import errors
from serving.api.jobs import IngestJob, ingest_target, names, split_names
from serving.api.originals import safe_name, save_upload, unique_in
from serving.api.schemas import (
    DocumentDeleted,
    DocumentOut,
    DocumentsOut,
    IngestRequest,
    JobStarted,
)
from serving.api.services import Services

router = APIRouter(tags=["documents"])


def registered(services: Services, doc_id: str) -> RegisteredDocument:
    record = services.container.registry.get(doc_id)
    if record is None:
        raise NotFoundError(f"no document {doc_id}; list them with GET /v1/documents")
    return record


@router.get("/v1/documents", responses=errors(403))
def list_documents(services: ServicesDep, _key: AdminDep) -> DocumentsOut:
    """Every ingested document."""
    records = services.container.registry.all()
    return DocumentsOut(documents=[DocumentOut.from_domain(r) for r in records])


@router.get("/v1/documents/{doc_id}", responses=errors(403, 404, 422))
def get_document(doc_id: str, services: ServicesDep, _key: AdminDep) -> DocumentOut:
    """One ingested document."""
    return DocumentOut.from_domain(registered(services, doc_id))


@router.delete("/v1/documents/{doc_id}", responses=errors(403, 404, 422))
def delete_document(doc_id: str, services: ServicesDep, _key: AdminDep) -> DocumentDeleted:
    """Remove a document and its chunks (an uploaded original too)."""
    registered(services, doc_id)
    services.ingestor.delete(doc_id)
    return DocumentDeleted(doc_id=doc_id)


@router.post("/v1/documents", status_code=202, responses=errors(400, 403, 422))
def upload_documents(
    services: ServicesDep,
    key: AdminDep,
    files: Annotated[list[UploadFile], File(description="The files to ingest.", min_length=1)],
    groups: Annotated[
        str | None,
        Form(
            description="Comma-separated groups that may read the files (recorded as the "
            "upload's access rule). Without: admins only."
        ),
    ] = None,
    tags: Annotated[str | None, Form(description="Comma-separated tags.")] = None,
) -> JobStarted:
    """Upload files and start an ingestion job; poll ``GET /v1/jobs/{id}``. Each upload
    is kept in a folder of its own (never sharing a path with another upload, whatever
    the names) and removed with its documents."""
    limit = services.settings.api.max_upload_files
    if len(files) > limit:
        raise InputError(f"{len(files)} files in one upload; send at most {limit} per request")
    group_list = split_names(groups, "groups")
    tag_list = split_names(tags, "tags")
    file_names = [safe_name(upload.filename or "") for upload in files]
    job_id = services.db.create_job(key.id, len(files))
    folder = private_dir(services.settings.uploads_dir) / job_id
    folder.mkdir(mode=0o700)
    max_mb = services.settings.ingest.max_file_mb
    saved: list[Path] = []
    rejected: list[dict[str, str]] = []
    for upload, name in zip(files, file_names, strict=True):
        target = unique_in(folder, name)
        if not save_upload(upload.file, target, int(max_mb * 1024 * 1024)):
            reason = f"file is over the {max_mb:g} MB limit (ENCLAVE_INGEST__MAX_FILE_MB)"
            rejected.append({"source": name, "status": "failed", "reason": reason})
            continue
        saved.append(target)
    if group_list is not None and saved:
        services.ingestor.access.set_rule(folder, group_list, key.principal.name, origin="upload")
    services.db.update_job(job_id, results=rejected, done_files=len(rejected))
    services.jobs.submit(IngestJob(job_id, saved, None, tag_list, key.principal.name, rejected))
    return JobStarted(job_id=job_id, status="queued", files=len(files))


@router.post(
    "/v1/ingest",
    status_code=202,
    response_model_exclude_none=True,
    responses=errors(400, 403, 422),
)
def ingest_path(body: IngestRequest, services: ServicesDep, key: AdminDep) -> JobStarted:
    """Ingest a file or folder on the server (inside ENCLAVE_API__INGEST_ROOTS) as a job;
    poll ``GET /v1/jobs/{id}``. Like ``enclave ingest``: unchanged files are skipped,
    documents whose files left the folder are deleted, and ``groups`` records the path's
    access rule."""
    target = ingest_target(services.settings.api.ingest_roots, body.path)
    groups = names(body.groups, "groups")
    tags = names(body.tags, "tags")
    job_id = services.db.create_job(key.id, 1 if target.is_file() else 0)
    services.jobs.submit(IngestJob(job_id, [target], groups, tags, key.principal.name, folder=True))
    return JobStarted(job_id=job_id, status="queued", files=None)

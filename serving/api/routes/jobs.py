"""Ingestion jobs (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import AdminDep, ServicesDep
from serving.api.errors import errors
from serving.api.schemas import JobOut, JobsOut

router = APIRouter(tags=["documents"])


@router.get("/v1/jobs/{job_id}", responses=errors(403, 404, 422))
def get_job(job_id: str, services: ServicesDep, _key: AdminDep) -> JobOut:
    """An ingestion job: status, progress, per-file results and warnings."""
    return JobOut.from_domain(services.db.get_job(job_id))


@router.get("/v1/jobs", responses=errors(403))
def list_jobs(services: ServicesDep, _key: AdminDep) -> JobsOut:
    """Recent ingestion jobs, newest first."""
    return JobsOut(jobs=[JobOut.from_domain(j) for j in services.db.list_jobs()])

"""The service's indexing jobs: an in-memory registry of their states (``GET /v1/index/jobs/{id}``).

Jobs live until the service restarts; of the finished ones, the last ``_FINISHED_JOBS_KEPT`` are kept.
The registry only records states: :class:`~retriever_service.service.RetrieverService` runs the jobs.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from chatir.schemas import IndexJob
from retriever_service.errors import NotFoundError

_FINISHED_JOBS_KEPT = 200


class JobRegistry:
    """Indexing jobs by id, thread-safe; callers get copies, never the stored job."""

    def __init__(self) -> None:
        self._jobs: dict[str, IndexJob] = {}
        self._lock = threading.Lock()

    def add(self) -> IndexJob:
        """Register a new queued job (and forget the oldest finished jobs beyond the limit)."""
        job = IndexJob(id=uuid.uuid4().hex, state="queued")
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old_jobs()
        return job

    def update(self, job_id: str, **fields: Any) -> None:
        """Set fields of a job (a job already forgotten is left alone)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._jobs[job_id] = job.model_copy(update=fields)

    def fail_queued(self, error: str) -> None:
        """Mark every job still waiting to start as failed with ``error`` (the service is stopping)."""
        with self._lock:
            for job in self._jobs.values():
                if job.state == "queued":
                    job.state, job.error = "failed", error

    def get(self, job_id: str) -> IndexJob:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise NotFoundError(
                    f"No indexing job with id {job_id!r} (jobs live until the service restarts)."
                )
            return job.model_copy(deep=True)

    def wait(self, job_id: str, timeout_s: float = 60.0) -> IndexJob:
        """Block until a job is done or failed, or ``timeout_s`` passed; returns its last state."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job.state in ("done", "failed") or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

    def _forget_old_jobs(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in ("done", "failed")]
        for job in finished[: max(0, len(finished) - _FINISHED_JOBS_KEPT)]:
            self._jobs.pop(job.id, None)


def job_fields(report: Any) -> dict[str, Any]:
    """IndexJob fields from the indexer's report (tolerant of its exact shape)."""
    fields: dict[str, Any] = {}
    for name in ("added", "unchanged", "duplicates", "pruned", "captioned", "other_shards"):
        value = getattr(report, name, None)
        if value is None:
            continue
        fields[name] = len(value) if isinstance(value, (list, tuple, set)) else int(value)
    skipped = getattr(report, "skipped", None) or []
    fields["skipped"] = [_skip_entry(item) for item in skipped]
    return fields


def _skip_entry(item: Any) -> dict[str, str]:
    if isinstance(item, dict):
        return {"path": str(item.get("path")), "reason": str(item.get("reason"))}
    if isinstance(item, tuple):
        return {"path": str(item[0]), "reason": str(item[1])}
    return {"path": str(item.path), "reason": str(item.reason)}


__all__ = ["JobRegistry", "job_fields"]

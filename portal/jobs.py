"""Services and selectors for Job rows: create, report progress, finish; and the JSON a page polls."""

from __future__ import annotations

from typing import Any

from django.db.models import F
from django.utils import timezone

from portal.models import Job


def job_create(
    *,
    kind: str,
    title: str,
    total: int = 0,
    created_by: Any = None,
    tenant_id: int | None = None,
    params: dict[str, Any] | None = None,
) -> Job:
    return Job.objects.create(
        kind=kind,
        title=title[:300],
        total=total,
        tenant_id=tenant_id,
        params=params or {},
        created_by=created_by if getattr(created_by, "is_authenticated", False) else None,
    )


def job_start(*, job_id: int, total: int | None = None, message: str = "") -> None:
    fields: dict[str, Any] = {"state": Job.State.RUNNING, "message": message[:1000], "updated_at": timezone.now()}
    if total is not None:
        fields["total"] = total
    Job.objects.filter(pk=job_id).exclude(state__in=Job.FINISHED).update(**fields)


def job_advance(*, job_id: int, by: int = 1, result: dict[str, Any] | None = None, message: str | None = None) -> None:
    """Count progress with an UPDATE, so two workers reporting at once never lose a step."""
    fields: dict[str, Any] = {"done": F("done") + by, "updated_at": timezone.now()}
    if message is not None:
        fields["message"] = message[:1000]
    Job.objects.filter(pk=job_id).update(**fields)
    if result is not None:
        # Results are appended under a row lock; bulk work reports one row at a time.
        from django.db import transaction

        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            job.results = [*job.results, result]
            job.save(update_fields=["results"])


def job_set_state(*, job_id: int, state: str, message: str = "") -> None:
    fields: dict[str, Any] = {"state": state, "message": message[:1000], "updated_at": timezone.now()}
    if state in Job.FINISHED:
        fields["finished_at"] = timezone.now()
    Job.objects.filter(pk=job_id).update(**fields)


def job_finish(*, job_id: int, ok: bool, message: str = "") -> None:
    job_set_state(job_id=job_id, state=Job.State.SUCCEEDED if ok else Job.State.FAILED, message=message)


def job_status(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.uuid),
        "kind": job.kind,
        "title": job.title,
        "state": job.state,
        "state_label": job.get_state_display(),
        "total": job.total,
        "done": job.done,
        "percent": job.percent,
        "message": job.message,
        "results": job.results[-500:],
        "finished": job.is_finished,
    }

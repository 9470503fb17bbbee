"""Bulk actions over many tenants: a dry run first, then a job with per-row results."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from portal import inputs
from portal.audit import audit_log
from portal.errors import PortalError
from portal.events import publish_on_commit
from portal.jobs import job_advance, job_create, job_finish, job_start
from portal.models import Job
from portal.roles import Actor, check_permission
from tenants import selectors, tasks
from tenants.models import Tenant, TenantOperation, UnknownProviderAccount
from tenants.services.lifecycle import _lifecycle_start, freeze_refusal, tenant_import
from tenants.services.operations import BULK_LIMIT
from tenants.services.runners import operation_run

Op = TenantOperation

logger = logging.getLogger("tenants")

BULK_ACTIONS = {"freeze": "Freeze", "unfreeze": "Unfreeze", "import": "Import"}


def bulk_preview(
    *, action: str, tenant_ids: list[int] | None = None, unknown_ids: list[int] | None = None
) -> list[dict[str, Any]]:
    """What a bulk action would do, per row, without doing it (the dry run)."""
    rows: list[dict[str, Any]] = []
    if action in ("freeze", "unfreeze"):
        tenants = Tenant.objects.filter(pk__in=(tenant_ids or [])[:BULK_LIMIT]).select_related("connection")
        busy = set(
            Op.objects.filter(tenant_id__in=[t.pk for t in tenants], state__in=Op.OPEN_STATES).values_list(
                "tenant_id", flat=True
            )
        )
        for t in tenants.order_by("id"):
            refusal = freeze_refusal(t, action)
            if refusal is None and t.pk in busy:
                refusal = "Another operation is still running on this tenant."
            rows.append(
                {
                    "key": str(t.uuid),
                    "id": t.pk,
                    "label": f"{t.company_name} ({t.account_name})",
                    "ok": refusal is None,
                    "message": refusal or f"Will {action} ({t.connection.get_kind_display()}).",
                }
            )
    elif action == "import":
        accounts = UnknownProviderAccount.objects.filter(pk__in=(unknown_ids or [])[:BULK_LIMIT])
        known = {
            (c, a)
            for c, a in Tenant.objects.filter(
                provider_account_id__in=[u.provider_account_id for u in accounts]
            ).values_list("connection_id", "provider_account_id")
        }
        for u in accounts.select_related("connection").order_by("id"):
            already = (u.connection_id, u.provider_account_id) in known
            rows.append(
                {
                    "key": str(u.pk),
                    "id": u.pk,
                    "label": f"{u.account_name or u.provider_account_id} ({u.connection.name})",
                    "ok": not already,
                    "message": "Already a tenant." if already else "Will import as a new tenant.",
                }
            )
    else:
        raise PortalError("Choose freeze, unfreeze or import.", field="action")
    return rows


def bulk_start(
    *,
    actor: Actor,
    action: str,
    ids: list[int] | None = None,
    filters: dict[str, str] | None = None,
    reason: str = "",
    request: HttpRequest | None = None,
) -> Job:
    """Start a bulk action on the rows the dry run showed as possible; runs in Celery.

    ``ids``: the selected rows (at most BULK_LIMIT). ``filters`` instead: every tenant that
    matches the tenant list's filters when the job walks them (by keyset, in id order), however
    many; the job counts them when it starts."""
    check_permission(actor, "tenants.manage" if action == "import" else "tenants.freeze", doing="run this bulk action")
    if action not in BULK_ACTIONS:
        raise PortalError("Choose freeze, unfreeze or import.", field="action")
    params: dict[str, Any]
    if filters is not None:
        if action == "import":
            raise PortalError("Import works on selected candidates only.", field="action")
        parsed = selectors.parse_filters({**filters, "sort": "id"})
        total = selectors.tenant_total(filters=parsed)
        if not total.value:
            raise PortalError("No tenant matches the filter.", field="scope")
        params = {"filters": parsed.raw}
        count, title = total.value, f"{BULK_ACTIONS[action]} {total} tenants matching a filter"
    else:
        ids = ids or []
        if not ids:
            raise PortalError("Select at least one row.", field="ids")
        if len(ids) > BULK_LIMIT:
            raise PortalError(f"At most {BULK_LIMIT} rows at a time; narrow the filter.", field="ids")
        params = {"ids": ids}
        count, title = len(ids), f"{BULK_ACTIONS[action]} {len(ids)} tenants"
    text = inputs.reason(reason) if action in ("freeze", "unfreeze") else ""
    with transaction.atomic():
        job = job_create(
            kind=f"tenants.bulk_{action}",
            title=title,
            total=count,
            created_by=actor,
            params={"action": action, "reason": text, **params},
        )
        audit_log(
            actor=actor,
            action=f"tenants.bulk.{action}_started",
            request=request,
            data={"job": str(job.uuid), "count": count, "reason": text, **params},
        )
        publish_on_commit(lambda: tasks.run_bulk.delay(job.pk), what=f"tenants.run_bulk {job.pk}")
    return job


def bulk_run(*, job_id: int) -> None:
    """Process a bulk job row by row; each freeze runs its provider call here, so the row's
    result is the real outcome. Resumes after a crash: rows already reported are skipped."""
    job = Job.objects.get(pk=job_id)
    if job.is_finished:
        return
    action, reason = job.params["action"], job.params.get("reason", "")
    actor = job.created_by
    done_keys = {str(r.get("id")) for r in job.results}
    ids: Iterable[int]
    if "filters" in job.params:
        # The filter is walked now, in id order, behind the last row already reported.
        filters = selectors.parse_filters({**job.params["filters"], "sort": "id"})
        after = max((int(k) for k in done_keys if k.isdigit()), default=None)
        ids = (t.pk for t in selectors.tenant_walk(filters=filters, after_id=after))
        total = len(done_keys) + selectors.tenant_match_count(filters=filters, after_id=after)
    else:
        ids = job.params["ids"]
        total = len(job.params["ids"])
    job_start(job_id=job.pk, total=total, message=f"{BULK_ACTIONS[action]}: working…")
    ok_count = 0
    for pk in ids:
        if str(pk) in done_keys:
            continue
        result: dict[str, Any] = {"id": pk, "key": str(pk), "label": str(pk), "ok": False, "message": ""}
        try:
            if action == "import":
                row = UnknownProviderAccount.objects.filter(pk=pk).select_related("connection").first()
                if row is None:
                    result["message"] = "No longer in the list (imported or gone)."
                else:
                    result["label"] = row.account_name or str(row.provider_account_id)
                    tenant = tenant_import(
                        actor=actor, connection=row.connection, provider_account_id=row.provider_account_id
                    )
                    result.update(ok=True, key=str(tenant.uuid), message="Imported.")
            else:
                tenant = Tenant.objects.select_related("connection").get(pk=pk)
                result.update(key=str(tenant.uuid), label=f"{tenant.company_name} ({tenant.account_name})")
                op = _lifecycle_start(
                    actor=actor, tenant=tenant, kind=action, reason=reason, request=None, enqueue=False
                )
                operation_run(operation_id=op.pk)
                op.refresh_from_db()
                result["ok"] = op.state == Op.State.SUCCEEDED
                result["message"] = op.last_error or ("Done." if result["ok"] else op.get_state_display())
                if op.state in (Op.State.UNKNOWN, Op.State.RETRYING):
                    result["message"] = "Retrying in the background: " + op.last_error
        except PortalError as exc:
            result["message"] = exc.message
        except Tenant.DoesNotExist:
            result["message"] = "No such tenant."
        ok_count += int(result["ok"])
        job_advance(job_id=job.pk, result=result)
    job.refresh_from_db()
    failed = sum(1 for r in job.results if not r.get("ok"))
    job_finish(job_id=job.pk, ok=True, message=f"{len(job.results) - failed} done, {failed} not done.")


# --- import candidates: scan the provider now -----------------------------------------------

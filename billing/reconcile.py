"""Nightly reconciliation: the portal's transfers against the provider's history.

Every succeeded transfer must appear at the provider once, with the same amount (matched by
payment_reference), and every transfer the provider shows between the parent and a child
must be one the portal made. Mismatches become DriftItems (with the provider's evidence)
and set Tenant.has_drift; staff resolve each one, audited.

The provider window is padded by a day on each side, so a transfer at 23:59:59 UTC is found
whatever timezone the provider assumes for the account; the client walks windows with more
than 10,000 history rows (the provider's cap on one query) by splitting them in time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing import conf, ledger
from billing import provider as prov
from billing.models import DriftItem, JournalEntry, SyncRun, Transfer
from billing.money import clean_text
from billing.sync import RunLost, claim_run, finish_run, run_start
from billing.transitions import Actor
from portal.audit import audit_log
from portal.errors import Conflict, NotAllowed, PortalError
from portal.jobs import job_advance, job_start
from portal.roles import has_perm
from tenants import services as tenant_services
from tenants.models import ProviderConnection, Tenant

logger = logging.getLogger("billing.reconcile")

BATCH = 1000


def reconcile_start(*, actor: Actor, connection: ProviderConnection) -> SyncRun:
    return run_start(actor=actor, connection=connection, kind=SyncRun.Kind.RECONCILE)


def reconcile_execute(*, sync_run_id: int, now: datetime | None = None) -> SyncRun | None:
    claimed = claim_run(sync_run_id)
    if claimed is None:
        return None
    run, token = claimed
    conn_obj = run.connection
    now = now or timezone.now()
    # Transfers younger than the settle window may not show in the history yet.
    window_to = now - conf.settle() - timedelta(minutes=1)
    window_from = window_to - timedelta(days=conf.reconcile_days())
    SyncRun.objects.filter(pk=run.pk).update(window_from=window_from, window_to=window_to)
    if run.job_id:
        job_start(job_id=run.job_id, message="Reading the provider's transfer history…")
    try:
        matched: set[str] = set()
        stats = {"seen": 0, "new": 0}
        batch: list[Any] = []
        rows = prov.iter_parent_transfers(
            conn_obj, from_date=window_from - timedelta(days=1), to_date=now + timedelta(days=1)
        )
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH:
                _provider_batch(conn_obj, batch, window_from, window_to, matched, stats, run, token)
                batch = []
        if batch:
            _provider_batch(conn_obj, batch, window_from, window_to, matched, stats, run, token)
        _portal_side(conn_obj, window_from, window_to, matched, stats, run, token)
        _user_side(conn_obj, window_from, window_to, now, stats, run, token)
        finish_run(run, token, ok=True)
    except RunLost:
        logger.warning("reconciliation %s lost its run", run.uuid)
    except Exception as exc:  # noqa: BLE001 - recorded on the run
        logger.exception("reconciliation %s failed", run.uuid)
        finish_run(run, token, ok=False, message=f"{type(exc).__name__}: {exc}")
    return SyncRun.objects.get(pk=run.pk)


def _record(
    conn_obj: ProviderConnection,
    items: Iterable[DriftItem],
    run: SyncRun,
    token: str,
    stats: dict[str, int],
    seen: int,
    reconciled: list[int],
) -> None:
    now = timezone.now()
    with transaction.atomic():
        if not SyncRun.objects.filter(pk=run.pk, executor=token, state=SyncRun.State.RUNNING).update(
            heartbeat_at=now, seen=F("seen") + seen, pages=F("pages") + 1
        ):
            raise RunLost
        if reconciled:
            Transfer.objects.filter(pk__in=reconciled, reconciled_at__isnull=True).update(reconciled_at=now)
        new_items = []
        for item in items:
            item.sync_run = run
            try:
                with transaction.atomic():
                    item.save(force_insert=True)
            except IntegrityError:
                continue  # found before (same fingerprint): nothing new
            new_items.append(item)
        tenant_ids = {i.tenant_id for i in new_items if i.tenant_id}
        if tenant_ids:
            Tenant.objects.filter(pk__in=tenant_ids, has_drift=False).update(has_drift=True, updated_at=now)
        for item in new_items:
            audit_log(
                actor=None,
                action="billing.drift.detected",
                tenant_id=item.tenant_id,
                data={
                    "drift": str(item.uuid),
                    "kind": item.kind,
                    "payment_reference": item.payment_reference,
                    "provider_txn_id": item.provider_txn_id,
                    "portal_amount": str(item.portal_amount),
                    "provider_amount": str(item.provider_amount),
                },
            )
        stats["new"] += len(new_items)
        SyncRun.objects.filter(pk=run.pk).update(new=F("new") + len(new_items))
    if run.job_id and seen:
        job_advance(job_id=run.job_id, by=seen)


def _provider_batch(
    conn_obj: ProviderConnection,
    rows: list[Any],
    window_from: datetime,
    window_to: datetime,
    matched: set[str],
    stats: dict[str, int],
    run: SyncRun,
    token: str,
) -> None:
    refs = {r.payment_reference for r in rows if r.payment_reference}
    transfers = {
        t.payment_reference: t for t in Transfer.objects.filter(connection=conn_obj, payment_reference__in=refs)
    }
    child_ids = {int(r.account_id) for r in rows}
    tenants = dict(
        Tenant.objects.filter(connection=conn_obj, provider_account_id__in=child_ids).values_list(
            "provider_account_id", "id"
        )
    )
    items: list[DriftItem] = []
    reconciled: list[int] = []
    for row in rows:
        direction = "to_tenant" if row.transaction_type == prov.CHILD_FROM_PARENT else "to_parent"
        amount = abs(Decimal(row.amount))
        tenant_id = tenants.get(int(row.account_id))
        evidence = {
            "transaction_id": row.transaction_id,
            "account_id": str(row.account_id),
            "performed_at": row.performed_at.isoformat(),
            "amount": str(row.amount),
            "currency": row.currency,
            "type": row.transaction_type,
            "payment_reference": row.payment_reference,
        }
        transfer = transfers.get(row.payment_reference or "")
        base = {
            "connection": conn_obj,
            "tenant_id": tenant_id,
            "payment_reference": row.payment_reference or "",
            "provider_txn_id": str(row.transaction_id),
            "provider_amount": amount,
            "currency": row.currency or "",
            "evidence": evidence,
        }
        if transfer is None:
            if row.performed_at < window_from:
                continue  # an older window's business
            items.append(
                DriftItem(
                    kind=DriftItem.Kind.MISSING_IN_PORTAL,
                    fingerprint=f"missing_in_portal:{conn_obj.pk}:{row.transaction_id}",
                    **base,
                )
            )
            continue
        base["tenant_id"] = transfer.tenant_id
        if transfer.payment_reference in matched:
            items.append(
                DriftItem(
                    kind=DriftItem.Kind.DUPLICATE_AT_PROVIDER,
                    transfer=transfer,
                    portal_amount=transfer.amount,
                    fingerprint=f"duplicate:{conn_obj.pk}:{row.transaction_id}",
                    **base,
                )
            )
            continue
        matched.add(transfer.payment_reference)
        if transfer.state == Transfer.State.FAILED:
            items.append(
                DriftItem(
                    kind=DriftItem.Kind.STATE_MISMATCH,
                    transfer=transfer,
                    portal_amount=transfer.amount,
                    fingerprint=f"state:{transfer.payment_reference}",
                    **base,
                )
            )
        elif transfer.state != Transfer.State.SUCCEEDED:
            continue  # still being resolved by its own state machine
        elif amount != transfer.amount or direction != transfer.direction:
            items.append(
                DriftItem(
                    kind=DriftItem.Kind.AMOUNT_MISMATCH,
                    transfer=transfer,
                    portal_amount=transfer.amount,
                    fingerprint=f"amount:{transfer.payment_reference}",
                    **base,
                )
            )
        else:
            reconciled.append(transfer.pk)
    stats["seen"] += len(rows)
    _record(conn_obj, items, run, token, stats, len(rows), reconciled)


def _portal_side(
    conn_obj: ProviderConnection,
    window_from: datetime,
    window_to: datetime,
    matched: set[str],
    stats: dict[str, int],
    run: SyncRun,
    token: str,
) -> None:
    """Succeeded transfers in the window the provider does not show."""
    candidates = (
        Transfer.objects.filter(
            connection=conn_obj,
            state=Transfer.State.SUCCEEDED,
            completed_at__gte=window_from,
            completed_at__lte=window_to,
        )
        .exclude(direction__in=Transfer.USER_DIRECTIONS)  # checked by _user_side
        .only("pk", "payment_reference", "tenant_id", "amount", "currency", "completed_at")
        .order_by("pk")
    )
    items: list[DriftItem] = []
    for transfer in candidates.iterator(chunk_size=2000):
        if transfer.payment_reference in matched:
            continue
        items.append(
            DriftItem(
                connection=conn_obj,
                tenant_id=transfer.tenant_id,
                transfer=transfer,
                kind=DriftItem.Kind.MISSING_AT_PROVIDER,
                fingerprint=f"missing_at_provider:{transfer.payment_reference}",
                payment_reference=transfer.payment_reference,
                portal_amount=transfer.amount,
                currency=transfer.currency,
                evidence={
                    "completed_at": transfer.completed_at.isoformat() if transfer.completed_at else None,
                    "window": [window_from.isoformat(), window_to.isoformat()],
                },
            )
        )
        if len(items) >= BATCH:
            _record(conn_obj, items, run, token, stats, 0, [])
            items = []
    _record(conn_obj, items, run, token, stats, 0, [])


def _user_side(
    conn_obj: ProviderConnection,
    window_from: datetime,
    window_to: datetime,
    now: datetime,
    stats: dict[str, int],
    run: SyncRun,
    token: str,
) -> None:
    """Money moved between a tenant's account and one of its PBX users, against the user's
    side of the provider's history (one lookup per user, by the reference prefix the portal
    writes in every description): a succeeded transfer must be there once with its amount, a
    failed one never."""
    done = (
        Transfer.objects.filter(
            connection=conn_obj,
            direction__in=Transfer.USER_DIRECTIONS,
            state__in=[Transfer.State.SUCCEEDED, Transfer.State.FAILED],
            completed_at__gte=window_from,
            completed_at__lte=window_to,
        )
        .only(
            "pk",
            "payment_reference",
            "tenant_id",
            "amount",
            "currency",
            "state",
            "direction",
            "child_account_id",
            "provider_user_id",
            "dup_check_from",
            "completed_at",
        )
        .order_by("child_account_id", "provider_user_id", "pk")
    )
    groups: dict[tuple[int, int], list[Transfer]] = {}
    for transfer in done.iterator(chunk_size=2000):
        assert transfer.provider_user_id is not None  # a database check holds it for user directions
        groups.setdefault((transfer.child_account_id, int(transfer.provider_user_id)), []).append(transfer)
    for (account_id, user_id), transfers in groups.items():
        found: dict[str, list[Any]] = {}
        for row in prov.iter_user_transfers(
            conn_obj,
            child_account_id=account_id,
            user_id=user_id,
            reference=USER_REFERENCE_PREFIX,
            from_date=min(t.dup_check_from for t in transfers),
            to_date=now + timedelta(days=1),
        ):
            found.setdefault((row.description or "").strip(), []).append(row)
        items: list[DriftItem] = []
        reconciled: list[int] = []
        for transfer in transfers:
            rows = found.get(transfer.payment_reference, [])
            item = _user_drift(conn_obj, transfer, rows)
            if item is None:
                if transfer.state == Transfer.State.SUCCEEDED:
                    reconciled.append(transfer.pk)
            else:
                items.append(item)
        stats["seen"] += len(transfers)
        _record(conn_obj, items, run, token, stats, len(transfers), reconciled)


#: Every description the portal writes on money moved to or from a PBX user starts so.
USER_REFERENCE_PREFIX = "rp-"


def _user_drift(conn_obj: ProviderConnection, transfer: Transfer, rows: list[Any]) -> DriftItem | None:
    sign = 1 if transfer.direction == Transfer.Direction.TO_USER else -1
    evidence = {
        "provider_transactions": [
            {
                "transaction_id": r.transaction_id,
                "account_id": str(r.account_id),
                "user_id": r.user_id,
                "performed_at": r.performed_at.isoformat(),
                "amount": str(r.amount),
                "currency": r.currency,
                "type": r.transaction_type,
            }
            for r in rows
        ]
    }
    base: dict[str, Any] = {
        "connection": conn_obj,
        "tenant_id": transfer.tenant_id,
        "transfer": transfer,
        "payment_reference": transfer.payment_reference,
        "portal_amount": transfer.amount,
        "currency": transfer.currency,
        "evidence": evidence,
    }
    if rows:
        base["provider_txn_id"] = str(rows[0].transaction_id)
        base["provider_amount"] = sign * Decimal(rows[0].amount)
    if transfer.state == Transfer.State.FAILED:
        if not rows:
            return None
        return DriftItem(kind=DriftItem.Kind.STATE_MISMATCH, fingerprint=f"state:{transfer.payment_reference}", **base)
    if not rows:
        return DriftItem(
            kind=DriftItem.Kind.MISSING_AT_PROVIDER,
            fingerprint=f"missing_at_provider:{transfer.payment_reference}",
            **base,
        )
    if len(rows) > 1:
        return DriftItem(
            kind=DriftItem.Kind.DUPLICATE_AT_PROVIDER,
            fingerprint=f"duplicate:{conn_obj.pk}:{rows[1].transaction_id}",
            **base,
        )
    if sign * Decimal(rows[0].amount) != transfer.amount:
        return DriftItem(
            kind=DriftItem.Kind.AMOUNT_MISMATCH, fingerprint=f"amount:{transfer.payment_reference}", **base
        )
    return None


_PROVIDER_TRUTH_KINDS = frozenset({DriftItem.Kind.THRESHOLD_MISMATCH, DriftItem.Kind.STATUS_MISMATCH})
_MONEY_RESOLUTIONS = frozenset({DriftItem.Resolution.ACKNOWLEDGED, DriftItem.Resolution.LEDGER_ADJUSTED})
_TRUTH_RESOLUTIONS = frozenset(
    {DriftItem.Resolution.ACKNOWLEDGED, DriftItem.Resolution.PORTAL_UPDATED, DriftItem.Resolution.PROVIDER_UPDATED}
)


def resolutions_for(kind: str) -> list[tuple[str, str]]:
    """The resolutions that make sense for a drift kind, for the resolve form."""
    allowed = _TRUTH_RESOLUTIONS if kind in _PROVIDER_TRUTH_KINDS else _MONEY_RESOLUTIONS
    return [(value, label) for value, label in DriftItem.Resolution.choices if value in allowed]


def drift_resolve(
    *, actor: Actor, item: DriftItem, resolution: str, note: str, request: HttpRequest | None = None
) -> DriftItem:
    """Close a drift item, audited. ``ledger_adjusted`` also records the provider's view in the
    journal (a balanced ``drift`` entry between the tenant and the outside world). For a
    threshold or status mismatch found by the sync: ``portal_updated`` takes the provider's
    value into the portal, ``provider_updated`` pushes the portal's value to the provider (a
    tracked tenant operation)."""
    if not has_perm(actor, "billing.move_money"):
        raise NotAllowed("You may not resolve drift.", code="forbidden")
    note = clean_text(note, field="note", max_length=1000)
    if resolution not in DriftItem.Resolution.values:
        raise PortalError("Choose how the drift was resolved.", field="resolution")
    allowed = _TRUTH_RESOLUTIONS if item.kind in _PROVIDER_TRUTH_KINDS else _MONEY_RESOLUTIONS
    if resolution not in allowed:
        raise PortalError(
            f"“{DriftItem.Resolution(resolution).label}” does not apply to “{item.get_kind_display()}”; choose one of: "
            + ", ".join(label for _, label in resolutions_for(item.kind))
            + ".",
            field="resolution",
        )
    now = timezone.now()
    with transaction.atomic():
        if not DriftItem.objects.filter(pk=item.pk, resolved_at__isnull=True).update(
            resolved_at=now, resolved_by=actor, resolution=resolution, resolution_note=note
        ):
            raise Conflict("This drift was already resolved.", code="already_resolved")
        item.refresh_from_db()
        delta = _ledger_delta(item) if item.kind not in _PROVIDER_TRUTH_KINDS else Decimal(0)
        if resolution == DriftItem.Resolution.LEDGER_ADJUSTED:
            if item.tenant_id is None or not delta:
                raise PortalError("There is nothing to record in the ledger for this item.", field="resolution")
            ledger.move(
                kind=JournalEntry.Kind.DRIFT,
                connection_id=item.connection_id,
                currency=item.currency or item.connection.currency,
                amount=delta,
                source=ledger.Account.WORLD,
                target=ledger.Leg(ledger.Account.TENANT, Decimal(0), item.tenant_id),
                transfer_id=item.transfer_id,
                memo=f"drift {item.uuid}",
            )
        applied: dict[str, Any] = {}
        if resolution in (DriftItem.Resolution.PORTAL_UPDATED, DriftItem.Resolution.PROVIDER_UPDATED):
            applied = _apply_truth(actor=actor, item=item, resolution=resolution, request=request)
        if item.tenant_id:
            still = DriftItem.objects.filter(tenant_id=item.tenant_id, resolved_at__isnull=True).exists()
            Tenant.objects.filter(pk=item.tenant_id).update(has_drift=still, updated_at=now)
        audit_log(
            actor=actor,
            action="billing.drift.resolved",
            tenant_id=item.tenant_id,
            request=request,
            data={
                "drift": str(item.uuid),
                "kind": item.kind,
                "resolution": resolution,
                "note": note,
                "ledger_delta": str(delta) if resolution == DriftItem.Resolution.LEDGER_ADJUSTED else None,
                "evidence": item.evidence if item.kind in _PROVIDER_TRUTH_KINDS else None,
                **applied,
            },
        )
    return item


def _apply_truth(*, actor: Actor, item: DriftItem, resolution: str, request: HttpRequest | None) -> dict[str, Any]:
    """Make the portal and the provider agree for a threshold or status drift; PortalError
    (and nothing changed: the caller's transaction rolls back) when that cannot be done."""
    if item.tenant_id is None:
        raise PortalError("This drift names no tenant.", field="resolution")
    tenant = Tenant.objects.select_for_update().select_related("connection").get(pk=item.tenant_id)
    if item.kind == DriftItem.Kind.THRESHOLD_MISMATCH:
        return _apply_threshold(actor=actor, tenant=tenant, item=item, resolution=resolution, request=request)
    return _apply_status(actor=actor, tenant=tenant, item=item, resolution=resolution)


def _apply_threshold(
    *, actor: Actor, tenant: Tenant, item: DriftItem, resolution: str, request: HttpRequest | None
) -> dict[str, Any]:
    from billing.alerts import tenant_set_low_balance_threshold

    if resolution == DriftItem.Resolution.PORTAL_UPDATED:
        value = Decimal(str(item.evidence.get("provider_threshold")))
        tenant_set_low_balance_threshold(actor=actor, tenant=tenant, threshold=value, request=request)
        return {"low_balance_threshold": str(value)}
    if tenant.low_balance_threshold is None:
        raise PortalError("The tenant has no threshold of its own to push.", field="resolution")
    op = tenant_services.tenant_push_threshold(actor=actor, tenant=tenant, threshold=tenant.low_balance_threshold)
    return {"operation": str(op.uuid), "threshold": str(tenant.low_balance_threshold)}


def _apply_status(*, actor: Actor, tenant: Tenant, item: DriftItem, resolution: str) -> dict[str, Any]:
    if tenant.status != item.evidence.get("portal_status"):
        raise Conflict(
            f"The tenant is {tenant.get_status_display().lower()} now, not as the drift found it; look again.",
            code="changed",
        )
    provider_active = item.evidence.get("provider_active")
    provider_frozen = item.evidence.get("provider_frozen")
    if resolution == DriftItem.Resolution.PORTAL_UPDATED:
        stopped = provider_frozen is True or provider_active is False
        status = Tenant.Status.FROZEN if stopped else Tenant.Status.ACTIVE
        reason = (
            ("Frozen by the provider." if provider_frozen is True else "Disabled at the provider.") if stopped else ""
        )
        Tenant.objects.filter(pk=tenant.pk).update(status=status, status_reason=reason, updated_at=timezone.now())
        return {"status": status}
    if tenant.status == Tenant.Status.FROZEN:
        raise PortalError(
            "The portal's freeze starts only from an active tenant, so it cannot be sent again from here; "
            "take the provider's status (the tenant becomes active) or acknowledge.",
            field="resolution",
        )
    if provider_frozen is True:
        raise PortalError(
            "The provider itself froze this account; only the provider can lift that. "
            "Take the provider's status or acknowledge.",
            field="resolution",
        )
    op = tenant_services.tenant_activate(actor=actor, tenant=tenant)
    return {"operation": str(op.uuid)}


def _ledger_delta(item: DriftItem) -> Decimal:
    """What the provider moved to the tenant that the journal does not show (signed)."""
    if item.transfer_id and item.transfer is not None and item.transfer.is_user_transfer:
        return Decimal(0)  # money inside the tenant's account: the journal's tenant line is unchanged
    provider_signed = Decimal(0)
    if item.provider_amount is not None:
        to_child = item.evidence.get("type") == prov.CHILD_FROM_PARENT
        provider_signed = item.provider_amount if to_child else -item.provider_amount
    portal_signed = Decimal(0)
    if item.transfer_id and item.portal_amount is not None and item.kind != DriftItem.Kind.STATE_MISMATCH:
        transfer = item.transfer
        portal_signed = item.portal_amount if transfer and transfer.direction == "to_tenant" else -item.portal_amount
    if item.kind == DriftItem.Kind.DUPLICATE_AT_PROVIDER:
        return provider_signed
    return provider_signed - portal_signed


def tenants_with_open_drift() -> QuerySet[Tenant]:
    return Tenant.objects.filter(Exists(DriftItem.objects.filter(tenant=OuterRef("pk"), resolved_at__isnull=True)))

"""How billing's audit actions read, and the transfers and sync runs an event names
(portal/audit_sentences.py finds this module by its name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from billing.models import SyncRun, Transfer
from portal.audit_sentences import Ref, Said, register, register_reference, uuids_among


def _transfers(keys: set[str]) -> Mapping[str, Ref]:
    rows = Transfer.objects.filter(uuid__in=uuids_among(keys)).only("pk", "uuid")
    found: dict[str, Ref] = {
        str(t.uuid): (f"transfer #{t.pk}", reverse("billing:transfer_detail", args=[t.uuid])) for t in rows
    }
    # A close step names its transfer by payment reference.
    for t in Transfer.objects.filter(payment_reference__in=keys).only("pk", "uuid", "payment_reference"):
        found[t.payment_reference] = (f"transfer #{t.pk}", reverse("billing:transfer_detail", args=[t.uuid]))
    return {k: found.get(k, ("a transfer", None)) for k in keys}


def _runs(keys: set[str]) -> Mapping[str, Ref]:
    rows = SyncRun.objects.filter(uuid__in=uuids_among(keys)).only("pk", "uuid")
    found: dict[str, Ref] = {str(r.uuid): (f"run #{r.pk}", reverse("billing:sync_run", args=[r.uuid])) for r in rows}
    return {k: found.get(k, ("a run", None)) for k in keys}


def _drift(keys: set[str]) -> Mapping[str, Ref]:
    return {k: ("a difference", reverse("billing:drift")) for k in keys}


register_reference("transfer", resolver=_transfers)
register_reference("run", resolver=_runs)
register_reference("drift", resolver=_drift)

_MOVED = {
    Transfer.Direction.TO_TENANT: "moved {} to {} ({})",
    Transfer.Direction.TO_PARENT: "pulled {} back from {} ({})",
    Transfer.Direction.TO_USER: "moved {} to a PBX user of {} ({})",
    Transfer.Direction.FROM_USER: "moved {} from a PBX user of {} ({})",
}


def _created(said: Said) -> str:
    pattern = _MOVED.get(said.data.get("direction", ""), "moved {} for {} ({})")
    body = format_html(pattern, mark_safe(said.money()), mark_safe(said.tenant), mark_safe(said.value("transfer")))  # noqa: S308
    reason = format_html(": {}", said.data["reason"]) if said.data.get("reason") else ""
    return format_html("{} {}{}", mark_safe(said.actor), body, reason)  # noqa: S308 - Said escapes


def _sync(said: Said) -> str:
    what = "balance sync" if said.event.action.startswith("billing.sync.") else "reconciliation"
    verb = said.event.action.rsplit(".", 1)[1]
    counts = ", ".join(
        f"{said.data[k]} {k}" for k in ("seen", "changed", "new", "missing", "errors") if said.data.get(k) is not None
    )
    who = "" if said.event.actor_id is None else format_html(" by {}", mark_safe(said.actor))  # noqa: S308
    return format_html(
        "The {} {} {} on {}{}{}",
        what,
        mark_safe(said.value("run") or "run"),  # noqa: S308 - Said escapes
        verb.replace("_", " "),
        mark_safe(said.value("connection") or "a connection"),  # noqa: S308
        who,
        format_html(": {}", counts) if counts else "",
    )


WORDINGS: dict[str, Any] = {
    "billing.transfer.created": _created,
    "billing.transfer.withdraw_skipped": "Nothing was pulled back from {tenant}[: {reason}][ (balance {balance})]",
    "billing.transfer.approved": "{actor} approved {transfer}[, recorded by {maker}]",
    "billing.transfer.rejected": "{actor} rejected {transfer}[: {error}]",
    "billing.transfer.sending": "{transfer} was sent to the provider[ (attempt {attempt})]",
    "billing.transfer.succeeded": "{transfer} to {tenant} succeeded[; balance after {balance_after}]",
    "billing.transfer.failed": "{transfer} to {tenant} failed[: {error}]",
    "billing.transfer.unknown": "The outcome of {transfer} is not known yet[: {error}]",
    "billing.transfer.retry_scheduled": "{transfer} will be sent again[ in {delay_seconds} seconds][: {error}]",
    "billing.transfer.needs_review": "{transfer} needs a person to look at it[: {reason}]",
    "billing.transfer.lookup_empty": "The provider does not show {transfer} yet[ (lookup {lookups})]",
    "billing.transfer.resend": "{transfer} will be sent again[: {reason}]",
    "billing.transfer.recheck": "{actor} asked to check {transfer} with the provider again[: {note}]",
    "billing.transfer.resolved_failed": "{actor} marked {transfer} failed[: {error}]",
    "billing.transfer.resolved_succeeded": "{actor} marked {transfer} succeeded[: {note}]",
    "billing.threshold.set": "{actor} set the low-balance threshold of {tenant} to {threshold}[ (was {previous})]",
    "billing.alert.low_balance": "{tenant} is low on money ({balance}, threshold {threshold}); {recipients} {to} told",
    "billing.alert.runway": "The money of {connection} lasts {days_of_cover} days[ at {spend_per_day} a day]",
    "billing.budget.adjusted": "The money available on {connection} is now {available}[ (change {delta})]",
    "billing.callbacks.configure": "{actor} set the provider's callbacks of {connection} to {url}",
    "billing.drift.detected": "A {drift} was found for {tenant}: the portal has {portal_amount}, the provider {provider_amount}",
    "billing.drift.resolved": "{actor} resolved a {drift} for {tenant}: {resolution}[ ({note})]",
}
for _kind in ("sync", "reconcile"):
    for _verb in ("started", "finished", "failed", "abandoned", "resumed"):
        WORDINGS[f"billing.{_kind}.{_verb}"] = _sync

register(WORDINGS)

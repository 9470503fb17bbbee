"""How the tenants app's audit actions read, and the tenants and connections an event names
(portal/audit_sentences.py finds this module by its name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from portal.audit_sentences import (
    Ref,
    Said,
    register,
    register_finder,
    register_reference,
    uuids_among,
    words_of,
)
from tenants.models import ProviderConnection, Tenant

_PRIVATE = {"password", "account_password", "api_key", "api_token"}


def _tenants(keys: set[str]) -> Mapping[str, Ref]:
    ids = {int(k) for k in keys if k.isdigit()}
    rows = Tenant.objects.filter(pk__in=ids).only("pk", "uuid", "company_name")
    found: dict[str, Ref] = {str(t.pk): (t.company_name, reverse("tenants:detail", args=[t.uuid])) for t in rows}
    by_uuid = Tenant.objects.filter(uuid__in=uuids_among(keys)).only("pk", "uuid", "company_name")
    found.update({str(t.uuid): (t.company_name, reverse("tenants:detail", args=[t.uuid])) for t in by_uuid})
    # A tenant the audit outlived still reads as words, never as a bare number.
    return {k: found.get(k, ("a removed tenant", None)) for k in keys}


def _connections(keys: set[str]) -> Mapping[str, Ref]:
    ids = {int(k) for k in keys if k.isdigit()}
    rows = ProviderConnection.objects.filter(pk__in=ids).only("pk", "name")
    found: dict[str, Ref] = {str(c.pk): (f"the {c.name} connection", None) for c in rows}
    for k in keys:
        found.setdefault(k, ("a removed connection", None) if k.isdigit() else (f"the {k} connection", None))
    return found


def _find_tenants(typed: str) -> list[int]:
    """The tenants a filter names: by uuid, or by a part of the company or account name."""
    rows = Tenant.objects.all()
    found = uuids_among({typed})
    if found:
        rows = rows.filter(uuid__in=found)
    else:
        rows = rows.filter(Q(company_name__icontains=typed) | Q(account_name__icontains=typed))
    return list(rows.order_by("id").values_list("id", flat=True)[:200])


register_reference("tenant", "source", resolver=_tenants)
register_finder("tenant", _find_tenants)
register_reference("connection", resolver=_connections)


def changes(before: Any, after: Any) -> str:
    """``{"plan": "a"}``, ``{"plan": "b"}`` -> "plan: a → b" (secrets never shown)."""
    before = before if isinstance(before, dict) else {}
    after = after if isinstance(after, dict) else {}
    parts = []
    for key in after:
        if key in _PRIVATE:
            parts.append(f"{key.replace('_', ' ')} changed")
        elif key in before and before[key] != after[key]:
            parts.append(f"{key.replace('_', ' ')}: {words_of(before[key])} → {words_of(after[key])}")
        elif key not in before:
            parts.append(f"{key.replace('_', ' ')}: {words_of(after[key])}")
    return "; ".join(parts)


def _edited(verb: str) -> Any:
    def render(said: Said) -> str:
        what = changes(said.data.get("before"), said.data.get("after"))
        tail = format_html(": {}", what) if what else ""
        password = " (password changed)" if said.data.get("password_changed") else ""
        return format_html("{} {} {}{}{}", mark_safe(said.actor), verb, mark_safe(said.tenant), tail, password)  # noqa: S308

    return render


def _bulk(said: Said) -> str:
    verb = said.event.action.removeprefix("tenants.bulk.").removesuffix("_started")
    count = said.data.get("count")
    return format_html(
        "{} started a bulk {} of {} tenants{}",
        mark_safe(said.actor),  # noqa: S308 - Said escapes
        verb,
        count if count is not None else "several",
        format_html(": {}", said.data["reason"]) if said.data.get("reason") else "",
    )


WORDINGS: dict[str, Any] = {
    "tenants.tenant.created": "{actor} created {tenant}[ on {connection}][ (account {account_name})]",
    "tenants.tenant.provisioned": "{tenant} was set up at the provider[ (account {provider_account})]",
    "tenants.tenant.provisioning_failed": "Setting up {tenant} at the provider failed[: {error}]",
    "tenants.tenant.cloned": "{actor} cloned {source} as {tenant}[ (account {account_name})]",
    "tenants.tenant.imported": "{actor} imported {tenant} from {connection}[ (account {account_name})]",
    "tenants.tenant.freeze_requested": "{actor} froze {tenant}[: {reason}]",
    "tenants.tenant.unfreeze_requested": "{actor} unfroze {tenant}[: {reason}]",
    "tenants.tenant.close_requested": "{actor} started closing {tenant}[: {reason}]",
    "tenants.tenant.frozen": "The provider froze {tenant}[: {reason}]",
    "tenants.tenant.unfrozen": "The provider made {tenant} active again[: {reason}]",
    "tenants.tenant.close_stage": "Closing {tenant}: {stage} done, next {next}[ ({note})][, {transfer}]",
    "tenants.tenant.closed": "{tenant} is closed[: {reason}]",
    "tenants.tenant.edited": _edited("edited"),
    "tenants.tenant.edit_requested": _edited("asked the provider to change"),
    "tenants.tenant.edited_at_provider": "The provider changed {tenant}[: {after}]",
    "tenants.tenant.edit_failed": "Changing {tenant} at the provider failed[: {error}]",
    "tenants.tenant.activate_requested": "{actor} asked the provider to enable {tenant}",
    "tenants.tenant.activated": "The provider enabled {tenant}",
    "tenants.tenant.activation_failed": "Enabling {tenant} at the provider failed[: {error}]",
    "tenants.operation.retried": "{actor} retried the {kind} of {tenant}[ from {stage}]",
    "tenants.operation.abandoned": "{actor} abandoned the {kind} of {tenant}[ (last error: {last_error})]",
    "tenants.operation.needs_attention": "Work on {tenant} needs attention[: {error}][ ({transfer})]",
    "tenants.owner.invited": "{actor} invited {email} to own {tenant}",
    "tenants.plan.change_requested": "{actor} asked to move {tenant} to plan {plan_id}[ (from plan {previous_plan_id})]",
    "tenants.plan.changed": "The provider moved {tenant} to its new plan",
    "tenants.plan.change_failed": "Changing the plan of {tenant} failed[: {error}]",
    "tenants.credentials.rotate_requested": "{actor} asked for new credentials for {tenant}[ (delivered by {delivery})]",
    "tenants.credentials.rotated": "New credentials for {tenant} are ready[ (delivered by {delivery})]",
    "tenants.credentials.rotate_failed": "New credentials for {tenant} could not be made[: {error}]",
    "tenants.credentials.shown": "{actor} viewed the new credentials of {tenant}",
    "tenants.credentials.emailed": "The new credentials of {tenant} were emailed to its owner",
    "tenants.secrets.rotated": "{actor} re-encrypted the stored secrets[ ({values} values)]",
    "tenants.threshold.push_requested": "{actor} sent the low-balance threshold {threshold} of {tenant} to the provider",
    "tenants.threshold.pushed": "The provider now warns {tenant} below {threshold}",
    "tenants.connection.base_url_changed": "{actor} changed the address of {connection}[ to {after}]",
    "tenants.connection.capabilities_check_requested": "{actor} asked to check what {connection} can do",
    "tenants.connection.capabilities_probed": "{connection} was checked[: answered {answered}][; missing {missing}]",
    "tenants.unknown_accounts.scan_started": "{actor} started looking for unknown accounts on {connection}",
    "tenants.unknown_accounts.scanned": "{connection} was scanned: {checked} accounts checked, {unknown} unknown",
    "tenants.unknown_accounts.scan_refused": "The scan of {connection} was refused[: {reason}]",
    "tenants.verification.warned": "{tenant} was warned about verification[ (hold until {hold_until})][; emailed: {emailed}]",
}
for _verb in ("freeze", "unfreeze", "import"):
    WORDINGS[f"tenants.bulk.{_verb}_started"] = _bulk

register(WORDINGS)

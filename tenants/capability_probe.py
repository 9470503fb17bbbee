"""Which provider methods a connection's provider still answers, asked rather than assumed.

A probe (providers.base.ProviderClient.probe_methods) calls each method once with arguments
the provider must refuse, and reads the answer: a validation error means the method exists,
"unknown command" that it is gone. The verdicts are stored on the connection
(``capabilities``, ``capabilities_checked_at``) and tenants.connections.effective_matrix
combines them with the static capability matrix, so a method the provider no longer answers
makes every capability that needs it unsupported, with the reason. A probe runs when a
connection is created (queued after the commit), every night (beat entry
``tenants-probe-capabilities-nightly``) and when staff press "Check now". docs/providers.md
describes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from portal.audit import audit_log
from portal.events import publish_on_commit
from portal.roles import check_permission, has_perm
from providers.capabilities import AVAILABLE, METHOD_CAPABILITIES, MISSING, PROBE_STATES, UNKNOWN
from providers.errors import ProviderError
from tenants import tasks
from tenants.connections import client_for
from tenants.models import ProviderConnection

logger = logging.getLogger("tenants.capability_probe")

#: Who may press "Check now": the permission that manages connections and tenants.
CHECK_PERMISSION = "tenants.manage"

__all__ = [
    "CHECK_PERMISSION",
    "ProbeOutcome",
    "capability_rows",
    "connection_check_now",
    "connection_probe",
    "connection_probe_later",
    "connections_probe_all",
    "console_panel",
]


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe did: ``answered`` is False when no method gave a verdict (the stored
    result was kept); ``capabilities`` is what is stored now."""

    connection_id: int
    answered: bool
    capabilities: dict[str, str]
    checked_at: datetime | None
    found: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _merge(previous: Any, found: dict[str, str]) -> dict[str, str]:
    """A verdict replaces the stored one; no verdict keeps it, and says "unknown" only for a
    method never probed before."""
    merged = {str(m): s for m, s in (previous or {}).items() if s in PROBE_STATES} if isinstance(previous, dict) else {}
    for method, state in found.items():
        if state in (AVAILABLE, MISSING):
            merged[method] = state
        else:
            merged.setdefault(method, UNKNOWN)
    return merged


def _ask(connection: ProviderConnection) -> tuple[dict[str, str], list[str], str]:
    """(verdicts, methods asked about, error): the provider's answers, never raising."""
    try:
        client = client_for(connection)
    except (ProviderError, OSError, ValueError) as exc:
        # Unreadable credentials: nothing was asked. Say which methods are still unknown.
        names = list(METHOD_CAPABILITIES.get(connection.kind, {}))
        return {name: UNKNOWN for name in names}, names, f"the client could not be built: {exc}"
    try:
        names = list(client.probe_method_names)
        return client.probe_methods(), names, ""
    except ProviderError as exc:  # probe_methods does not raise; a client bug must not break a run
        logger.warning("capability probe of connection %s failed: %s", connection.pk, exc)
        return {name: UNKNOWN for name in client.probe_method_names}, list(client.probe_method_names), str(exc)
    finally:
        client.close()


def connection_probe(connection: ProviderConnection, *, actor: Any = None) -> ProbeOutcome:
    """Probe the provider of ``connection`` and store the result. Call it outside a database
    transaction (it talks to the provider). A probe that gets no verdict at all (provider
    unreachable or failing) keeps the stored result and its time."""
    found, names, error = _ask(connection)
    answered = any(state in (AVAILABLE, MISSING) for state in found.values())
    nothing_to_probe = not names and not error
    now = timezone.now()
    with transaction.atomic():
        row = ProviderConnection.objects.select_for_update().get(pk=connection.pk)
        merged = _merge(row.capabilities, found)
        checked_at = now if (answered or nothing_to_probe) else row.capabilities_checked_at
        ProviderConnection.objects.filter(pk=row.pk).update(capabilities=merged, capabilities_checked_at=checked_at)
        missing = sorted(m for m, s in merged.items() if s == MISSING)
        audit_log(
            actor=actor,
            action="tenants.connection.capabilities_probed",
            data={
                "connection": row.name,
                "answered": answered,
                "missing": missing,
                "unknown": sorted(m for m, s in merged.items() if s == UNKNOWN),
                **({"error": error[:300]} if error else {}),
            },
        )
    connection.capabilities = merged
    connection.capabilities_checked_at = checked_at
    if not answered and names:
        logger.warning("capability probe of connection %s got no verdict; the stored result stands", connection.pk)
    return ProbeOutcome(
        connection_id=connection.pk,
        answered=answered or nothing_to_probe,
        capabilities=merged,
        checked_at=checked_at,
        found=found,
        error=error,
    )


def connection_check_now(
    *, actor: Any, connection: ProviderConnection, request: HttpRequest | None = None
) -> ProbeOutcome:
    """Staff's "Check now": the same probe, at once, audited as the actor's click."""
    check_permission(actor, CHECK_PERMISSION, doing="check which methods the provider answers")
    audit_log(
        actor=actor,
        action="tenants.connection.capabilities_check_requested",
        data={"connection": connection.name},
        request=request,
    )
    return connection_probe(connection, actor=actor)


def connection_probe_later(connection: ProviderConnection) -> None:
    """Queue a probe once the current transaction commits (a new connection does not wait for
    the network). A broker that is down is logged; the nightly probe catches up."""
    connection_id = connection.pk
    publish_on_commit(
        lambda: tasks.probe_connection.delay(connection_id), what=f"tenants.probe_connection {connection_id}"
    )


def connections_probe_all() -> dict[str, int]:
    """The nightly run: probe every active connection, one after the other."""
    counts = {"probed": 0, "answered": 0}
    for connection in ProviderConnection.objects.filter(is_active=True).order_by("pk"):
        outcome = connection_probe(connection)
        counts["probed"] += 1
        counts["answered"] += int(outcome.answered)
    return counts


# -- reads for the pages ------------------------------------------------------------------


def capability_rows(connection: ProviderConnection) -> list[dict[str, Any]]:
    """Each probed method of the connection's provider with its stored state and the
    capabilities that need it, in the probe's order."""
    stored = connection.capabilities if isinstance(connection.capabilities, dict) else {}
    needs = METHOD_CAPABILITIES.get(connection.kind, {})
    methods = [*needs, *sorted(m for m in stored if m not in needs)]
    return [
        {
            "method": method,
            "state": stored.get(method, UNKNOWN) if stored.get(method) in PROBE_STATES else UNKNOWN,
            "needed_by": [cap.value.replace("_", " ") for cap in needs.get(method, ())],
        }
        for method in methods
    ]


def can_check(user: Any) -> bool:
    return has_perm(user, CHECK_PERMISSION)


def console_panel() -> dict[str, Any]:
    """The console home's panel (composed by console/views.py): every active connection's
    probed methods."""
    panels = []
    for connection in ProviderConnection.objects.filter(is_active=True).order_by("name"):
        rows = capability_rows(connection)
        panels.append({"connection": connection, "rows": rows, "missing": [r for r in rows if r["state"] == MISSING]})
    return {
        "capability_connections": panels,
        "console_panels": ["tenants/_capabilities_console.html"],
    }

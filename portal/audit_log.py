"""The audit log page's reads: its filters (actor, tenant, action, a date range) parsed with a
message on each field, a keyset page of the rows, and the same rows walked for the CSV."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice

from django.db.models import QuerySet

from portal import inputs
from portal.audit_sentences import Sentence, find, sentences
from portal.errors import PortalError
from portal.listing import keyset_walk
from portal.models import AuditEvent

PAGE_SIZE = 50


@dataclass
class AuditFilters:
    actor: str = ""
    tenant: str = ""
    action: str = ""
    date_from: date | None = None
    date_to: date | None = None
    before: int | None = None
    errors: dict[str, str] = field(default_factory=dict)
    # What the fields showed, kept as typed when one is refused.
    raw: dict[str, str] = field(default_factory=dict)

    def query(self, *, cursor: bool = False) -> str:
        """The filters as a query string (for the pager and the CSV link)."""
        from urllib.parse import urlencode

        pairs = {k: v for k, v in self.raw.items() if v and (cursor or k != "before")}
        return urlencode(pairs)


def _typed(params: Mapping[str, str], name: str, limit: int = 150) -> str:
    return str(params.get(name, "") or "").strip()[:limit]


def parse_filters(params: Mapping[str, str]) -> AuditFilters:
    f = AuditFilters(raw={n: _typed(params, n) for n in ("actor", "tenant", "action", "from", "to")})
    for name, label in (("actor", "actor"), ("tenant", "tenant"), ("action", "action")):
        value = f.raw[name]
        if value and inputs.has_invisible(value):
            f.errors[name] = f"The {label} holds invisible characters; type it again."
        else:
            setattr(f, name, value)
    for name, attr, label in (("from", "date_from", "From date"), ("to", "date_to", "To date")):
        try:
            setattr(f, attr, inputs.iso_date(f.raw[name], field=name, label=label))
        except PortalError as exc:
            f.errors[name] = exc.message
    if f.date_from and f.date_to and f.date_from > f.date_to:
        f.errors["from"] = "The From date is after the To date; choose a From date on or before it."
    before = _typed(params, "before", 20)
    if before:
        if inputs.is_ascii_digits(before):
            f.before = int(before)
            f.raw["before"] = before
        else:
            f.errors["before"] = "That page link is not valid; the newest events are shown."
    return f


def filtered_events(f: AuditFilters) -> QuerySet[AuditEvent]:
    """The rows the filters select (no cursor), newest first. A tenant filter that names no
    tenant selects nothing, and says so on its field."""
    rows = AuditEvent.objects.all()
    if f.actor:
        rows = rows.filter(actor_label__iexact=f.actor)
    if f.tenant:
        ids = find("tenant", f.tenant)
        if not ids:
            f.errors.setdefault("tenant", f"No tenant matches “{f.tenant}”.")
            return rows.none()
        rows = rows.filter(tenant_id__in=ids)
    if f.action:
        rows = rows.filter(action__startswith=f.action)
    if f.date_from:
        rows = rows.filter(created_at__gte=datetime.combine(f.date_from, time.min, tzinfo=UTC))
    if f.date_to:
        rows = rows.filter(created_at__lt=datetime.combine(f.date_to + timedelta(days=1), time.min, tzinfo=UTC))
    return rows.order_by("-id")


@dataclass
class AuditPage:
    rows: list[Sentence]
    next_before: int | None


def audit_page(f: AuditFilters, *, limit: int = PAGE_SIZE) -> AuditPage:
    """One keyset page: the ``limit`` newest rows older than ``f.before``."""
    rows = filtered_events(f)
    if f.before is not None:
        rows = rows.filter(id__lt=f.before)
    found = list(rows[: limit + 1])
    more = len(found) > limit
    shown = found[:limit]
    return AuditPage(sentences(shown), shown[-1].pk if more and shown else None)


def walk_sentences(f: AuditFilters, *, batch: int = 500) -> Iterator[Sentence]:
    """Every row the filters select, newest first, as sentences: a keyset walk read a batch at
    a time, so an export of any size holds one batch in memory."""
    walk: Iterable[AuditEvent] = keyset_walk(filtered_events(f), descending=True, batch=batch)
    it = iter(walk)
    while chunk := list(islice(it, batch)):
        yield from sentences(chunk)

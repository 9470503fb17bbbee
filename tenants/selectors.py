"""Every read of tenants a page or the API needs.

The list is built for 530,000 rows: keyset (cursor) pagination instead of OFFSET, totals
that are capped or estimated instead of counted (portal.listing, docs/lists.md), fixed-choice
filters, and searches that an index can answer (exact provider id,
case-insensitive prefixes through range scans on lower(...)). Substring search is opt-in
("anywhere") and uses a pg_trgm index on a narrow search table on PostgreSQL (migration 0009)
or an FTS5 trigram table on SQLite (migration 0004).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from uuid import UUID

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection as db_connection
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.db.models.lookups import GreaterThanOrEqual, LessThan, StartsWith
from django.http import Http404

from portal import inputs
from portal.errors import PortalError
from portal.listing import Total, list_total
from portal.roles import Actor, Role
from tenants.models import Membership, ProviderConnection, Tenant, TenantOperation, UnknownProviderAccount

SORTS = {
    "-id": "Newest first",
    "id": "Oldest first",
    "company": "Company A→Z",
    "-company": "Company Z→A",
    "balance": "Balance, lowest first",
    "-balance": "Balance, highest first",
}
MAX_LIMIT = 200
# Columns the list shows; the long text columns (notes, secrets) stay on disk.
LIST_FIELDS = (
    "id",
    "uuid",
    "company_name",
    "account_name",
    "account_email",
    "provider_account_id",
    "provider_account_ref",
    "connection_id",
    "status",
    "balance",
    "currency",
    "is_low_balance",
    "has_drift",
    "missing_at_provider",
    "verification_status",
    "created_at",
    # The list's "provider disagrees" marker reads these (no per-row query).
    "provider_active",
    "provider_frozen",
    "low_balance_threshold",
    "provider_threshold",
)


class TenantPage(NamedTuple):
    rows: list[Tenant]
    next_cursor: str | None


@dataclass
class TenantFilters:
    """Validated list filters. Build with :func:`parse_filters`."""

    q: str = ""
    anywhere: bool = False
    status: str = ""
    connection_id: int | None = None
    currency: str = ""
    balance_min: Decimal | None = None
    balance_max: Decimal | None = None
    low_balance: bool = False
    drift: bool = False
    verification_required: bool = False
    sort: str = "-id"
    raw: dict[str, str] = field(default_factory=dict)


# The filters tenant_list understands: the console list and the API read these from a query.
FILTER_NAMES = (
    "q",
    "anywhere",
    "status",
    "connection",
    "currency",
    "balance_min",
    "balance_max",
    "low_balance",
    "drift",
    "verification_required",
    "sort",
)


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "on", "yes")


def _decimal(value: Any, name: str) -> Decimal | None:
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    if not re.fullmatch(r"-?\d{1,14}(\.\d{1,4})?", text):
        raise PortalError("Enter an amount like 10 or 10.50.", field=name)
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already rules it out
        raise PortalError("Enter an amount like 10 or 10.50.", field=name) from None


def parse_filters(filters: dict[str, Any] | TenantFilters | None) -> TenantFilters:
    """Turn query parameters (or the API's dict) into :class:`TenantFilters`; bad values
    raise PortalError on the field concerned."""
    if isinstance(filters, TenantFilters):
        return filters
    data = {k: v for k, v in (filters or {}).items() if v not in (None, "")}
    result = TenantFilters(raw={k: str(v) for k, v in data.items()})
    q = str(data.get("q", "")).strip()
    if len(q) > 100:
        raise PortalError("Search for at most 100 characters.", field="q")
    if "\x00" in q:
        raise PortalError("The search contains a character that cannot be searched.", field="q")
    result.q = q
    result.anywhere = _flag(data.get("anywhere", ""))
    status = str(data.get("status", ""))
    if status and status not in Tenant.Status.values:
        raise PortalError("Choose a status from the list.", field="status")
    result.status = status
    conn = data.get("connection") or data.get("provider")
    if conn:
        conn_text = str(conn)
        found = None
        if inputs.is_ascii_digits(conn_text):
            found = ProviderConnection.objects.filter(pk=int(conn_text)).values_list("pk", flat=True).first()
        elif re.fullmatch(r"[0-9a-fA-F-]{32,36}", conn_text):
            found = ProviderConnection.objects.filter(uuid=conn_text).values_list("pk", flat=True).first()
        if found is None:
            raise PortalError("Choose a provider connection from the list.", field="connection")
        result.connection_id = found
    currency = str(data.get("currency", "")).strip().upper()
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        raise PortalError("Enter a three-letter currency code such as USD.", field="currency")
    result.currency = currency
    result.balance_min = _decimal(data.get("balance_min"), "balance_min")
    result.balance_max = _decimal(data.get("balance_max"), "balance_max")
    if result.balance_min is not None and result.balance_max is not None and result.balance_min > result.balance_max:
        raise PortalError("The lowest balance must not be above the highest.", field="balance_max")
    result.low_balance = _flag(data.get("low_balance", ""))
    result.drift = _flag(data.get("drift", ""))
    result.verification_required = _flag(data.get("verification_required", ""))
    sort = str(data.get("sort", "-id"))
    if sort not in SORTS:
        raise PortalError("Choose a sort order from the list.", field="sort")
    result.sort = sort
    if sort in ("balance", "-balance") and not currency:
        currencies = balance_sort_currencies()
        if balance_sort_needs_currency(currencies):
            # Amounts of different currencies do not compare, and the portal never converts.
            raise PortalError(
                "Sorting by balance compares amounts of one currency: choose a currency ("
                + ", ".join(currencies)
                + ").",
                field="currency",
                code="currency_required",
            )
    return result


def balance_sort_needs_currency(currencies: Iterable[str]) -> bool:
    """Amounts of different currencies do not compare: with more than one, a balance sort
    needs a currency filter (the list's header and parse_filters both ask this)."""
    return len(set(currencies)) > 1


def balance_sort_currencies() -> list[str]:
    """The currencies a balance sort would mix: those of the provider connections (a tenant
    takes its connection's currency). A handful of rows, so every list request may ask."""
    return sorted(set(ProviderConnection.objects.values_list("currency", flat=True)))


def _prefix_range(prefix: str) -> tuple[str, str]:
    """[prefix, successor) covers exactly the strings starting with prefix (bytewise order)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _search(qs: QuerySet[Tenant], q: str, anywhere: bool) -> QuerySet[Tenant]:
    needle = q.lower()
    if anywhere and len(needle) >= 3 and db_connection.vendor == "postgresql":
        # One id subquery for every way the text can match, so PostgreSQL can join it (an
        # OR of it with the id columns would be checked row by row over the whole list).
        return qs.filter(id__in=_pg_anywhere_ids(q, needle))
    condition = Q()
    if inputs.is_ascii_digits(q):
        condition |= Q(provider_account_id=int(q))
    condition |= Q(provider_account_ref=q) if q.startswith("key_") else Q()
    if anywhere and len(needle) >= 3:
        condition |= Q(id__in=_substring_ids(needle))
        return qs.filter(condition)
    low, high = _prefix_range(needle)
    # Range scans on lower(col) use the expression indexes on both databases (lookups on the
    # expression, no annotation, so nothing extra is selected). SQLite compares bytewise, so
    # the range is exact; PostgreSQL may run under a linguistic collation, where LIKE removes
    # what the range lets in.
    guard = db_connection.vendor != "sqlite"

    def prefix(expression: Any) -> Q:
        condition = Q(GreaterThanOrEqual(expression, low)) & Q(LessThan(expression, high))
        return condition & Q(StartsWith(expression, needle)) if guard else condition

    # Only the columns the text can occur in: fewer OR branches, fewer index scans to merge.
    spaced = any(ch.isspace() for ch in needle)
    if "@" not in needle:
        condition |= prefix(Lower("company_name"))
        if not spaced:
            condition |= Q(account_name__gte=low, account_name__lt=high)
    if not spaced:
        condition |= prefix(Lower("account_email"))
    return qs.filter(condition)


def _pg_anywhere_ids(q: str, needle: str) -> RawSQL:
    """PostgreSQL: the ids of the tenants whose company, account name or email contains
    ``needle`` (the narrow search table of migration 0009 and its pg_trgm index; its document
    is lower(company || ' ' || account name || ' ' || email), the needle's LIKE wildcards
    escaped), or whose provider id or key is exactly ``q``."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    sql = "SELECT tenant_id FROM tenants_tenant_search WHERE document LIKE %s"
    params: list[Any] = [f"%{escaped}%"]
    if inputs.is_ascii_digits(q) and int(q) < 2**63:  # a provider id is a bigint
        sql += " UNION ALL SELECT id FROM tenants_tenant WHERE provider_account_id = %s"
        params.append(int(q))
    if q.startswith("key_"):
        sql += " UNION ALL SELECT id FROM tenants_tenant WHERE provider_account_ref = %s"
        params.append(q)
    return RawSQL(sql, params)  # noqa: S611 - fixed SQL text, every value bound


def _substring_ids(needle: str) -> Any:
    """Ids of the rows whose company, account name or email contains ``needle`` (3+ chars),
    as a subquery (SQLite's FTS5 table, or icontains elsewhere)."""
    if db_connection.vendor == "sqlite" and _sqlite_has_fts():
        phrase = '"' + needle.replace('"', '""') + '"'
        return RawSQL("SELECT rowid FROM tenants_tenant_fts WHERE tenants_tenant_fts MATCH %s", (phrase,))
    return Tenant.objects.filter(
        Q(company_name__icontains=needle) | Q(account_name__icontains=needle) | Q(account_email__icontains=needle)
    ).values("id")


def _sqlite_has_fts() -> bool:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'tenants_tenant_fts'")
        return cursor.fetchone() is not None


def _filtered(f: TenantFilters) -> QuerySet[Tenant]:
    qs = Tenant.objects.all()
    if f.status:
        qs = qs.filter(status=f.status)
    if f.connection_id is not None:
        qs = qs.filter(connection_id=f.connection_id)
    if f.currency:
        qs = qs.filter(currency=f.currency)
    if f.balance_min is not None:
        qs = qs.filter(balance__gte=f.balance_min)
    if f.balance_max is not None:
        qs = qs.filter(balance__lte=f.balance_max)
    # "__in=[True]", not "=True": Django writes a true boolean test as the bare column on
    # SQLite ("WHERE is_low_balance"), which scans the whole index instead of seeking to the
    # true rows (a capped count of 5,000 low-balance tenants: 10 ms against 0.4 ms).
    if f.low_balance:
        qs = qs.filter(is_low_balance__in=[True])
    if f.drift:
        qs = qs.filter(has_drift__in=[True])
    if f.verification_required:
        qs = qs.filter(verification_status=Tenant.Verification.REQUIRED)
    if f.q:
        qs = _search(qs, f.q, f.anywhere)
    return qs


def encode_cursor(values: list[Any]) -> str:
    raw = json.dumps([str(v) if isinstance(v, Decimal) else v for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, sort: str) -> list[Any] | None:
    """The cursor's position, or None for the first page. A cursor is only a position: the
    filters are applied again, so a forged one can never reveal more than the filter allows."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != 2 or type(values[1]) is not int:
            raise ValueError("shape")
        key = values[0]
        if sort in ("-id", "id"):
            if key is not None:
                raise ValueError("id cursor")
        elif sort in ("company", "-company"):
            if not isinstance(key, str):
                raise ValueError("company cursor")
        elif key is not None:
            key = Decimal(str(key))
            if not key.is_finite():
                raise ValueError("balance cursor")
        return [key, values[1]]
    except (ValueError, TypeError, InvalidOperation, UnicodeDecodeError):
        raise PortalError("That page link is not valid any more; start from the first page.", field="cursor") from None


def _page(
    qs: QuerySet[Tenant], sort: str, position: list[Any] | None, limit: int
) -> tuple[list[Tenant], list[Any] | None]:
    """One page in ``sort`` order after ``position``; returns rows and the next position."""
    key, last_id = position if position else (None, None)
    desc = sort.startswith("-")
    if sort in ("-id", "id"):
        if last_id is not None:
            qs = qs.filter(id__lt=last_id) if desc else qs.filter(id__gt=last_id)
        rows = list(qs.order_by("-id" if desc else "id")[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, ([None, rows[-1].id] if more else None)
    if sort in ("company", "-company"):
        if last_id is not None:
            if desc:
                qs = qs.filter(Q(company_name__lte=key) & (Q(company_name__lt=key) | Q(id__lt=last_id)))
            else:
                qs = qs.filter(Q(company_name__gte=key) & (Q(company_name__gt=key) | Q(id__gt=last_id)))
        order = ("-company_name", "-id") if desc else ("company_name", "id")
        rows = list(qs.order_by(*order)[: limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, ([rows[-1].company_name, rows[-1].id] if more else None)
    # Balance: rows with a known balance in balance order, then the unknown ones by id.
    rows = []
    if not (position and key is None):
        known = qs.filter(balance__isnull=False)
        if last_id is not None:
            if desc:
                known = known.filter(Q(balance__lte=key) & (Q(balance__lt=key) | Q(id__lt=last_id)))
            else:
                known = known.filter(Q(balance__gte=key) & (Q(balance__gt=key) | Q(id__gt=last_id)))
        order = ("-balance", "-id") if desc else ("balance", "id")
        rows = list(known.order_by(*order)[: limit + 1])
        if len(rows) > limit:
            rows = rows[:limit]
            return rows, [rows[-1].balance, rows[-1].id]
        last_id = None
    unknown = qs.filter(balance__isnull=True)
    if last_id is not None:
        unknown = unknown.filter(id__gt=last_id)
    room = limit - len(rows)
    rest = list(unknown.order_by("id")[: room + 1])
    more = len(rest) > room
    rows += rest[:room]
    if not more:
        return rows, None
    # Position inside the unknown-balance rows; 0 when none of them is on this page yet.
    return rows, [None, rows[-1].id if rows[-1].balance is None else 0]


def tenant_list(*, filters: dict[str, Any] | TenantFilters, cursor: str | None = None, limit: int = 50) -> TenantPage:
    """A page of tenants (staff) matching ``filters``, and the cursor of the next page.

    ``filters`` keys: q, anywhere, status, connection (id or uuid), currency, balance_min,
    balance_max, low_balance, drift, sort (one of SORTS). Bad values raise PortalError.
    """
    f = parse_filters(filters)
    limit = max(1, min(int(limit), MAX_LIMIT))
    position = decode_cursor(cursor, f.sort)
    qs = _filtered(f).only(*LIST_FIELDS)
    rows, next_position = _page(qs, f.sort, position, limit)
    return TenantPage(rows, encode_cursor(next_position) if next_position else None)


# The list's columns a header click sorts, and the sort key each gives: only the columns an
# index orders together with id (tenant_company_idx, tenant_balance_idx, the primary key).
SORTABLE_COLUMNS = {"company": "company", "balance": "balance", "created": "id"}
WALK_BATCH = 1000


def is_filtered(f: TenantFilters) -> bool:
    """True when the filters narrow the list (a sort alone does not)."""
    return bool(set(f.raw) - {"sort"})


def tenant_total(*, filters: dict[str, Any] | TenantFilters) -> Total:
    """How many tenants match, as far as it is cheap to know (portal.listing.list_total):
    "about 530,000" from the statistics, or a count capped at 10,000."""
    f = parse_filters(filters)
    # The planner's guess for a text search can be far off: count those (capped) first.
    return list_total(_filtered(f), filtered=is_filtered(f), trust_plan=not f.q)


def tenant_walk(
    *, filters: dict[str, Any] | TenantFilters, after_id: int | None = None, batch: int = WALK_BATCH
) -> Iterator[Tenant]:
    """Every tenant matching ``filters``, in the list's sort order, a keyset page at a time
    (the CSV export and the bulk actions on a filter). ``after_id`` restarts an id-ordered
    walk behind that id."""
    f = parse_filters(filters)
    qs = _filtered(f).only(*LIST_FIELDS)
    position: list[Any] | None = [None, after_id] if after_id and f.sort == "id" else None
    while True:
        rows, position = _page(qs, f.sort, position, batch)
        yield from rows
        if position is None:
            return


def tenant_match_count(*, filters: dict[str, Any] | TenantFilters, after_id: int | None = None) -> int:
    """The exact number of matching tenants (behind ``after_id``): for a bulk job's progress,
    counted once in the background, never on a page."""
    qs = _filtered(parse_filters(filters))
    if after_id:
        qs = qs.filter(id__gt=after_id)
    return qs.count()


def tenant_get(*, uuid: UUID | str) -> Tenant:
    """A tenant by uuid, for staff pages; Http404 when missing (or not a uuid)."""
    try:
        return Tenant.objects.select_related("connection").get(uuid=uuid)
    except (Tenant.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such tenant") from None


def tenant_for_user(*, user: Actor) -> Tenant | None:
    """The customer's tenant (through their Membership), or None."""
    if not isinstance(user, User):
        return None
    membership = Membership.objects.select_related("tenant", "tenant__connection").filter(user=user).first()
    return membership.tenant if membership else None


def tenant_members(*, tenant: Tenant) -> list[Membership]:
    return list(
        Membership.objects.filter(tenant=tenant)
        .select_related("user")
        .prefetch_related("user__groups")
        .order_by("user__username")
    )


def tenant_operations(*, tenant: Tenant, limit: int = 10) -> list[TenantOperation]:
    return list(TenantOperation.objects.filter(tenant=tenant).select_related("job", "created_by")[:limit])


def tenant_open_operation(*, tenant: Tenant) -> TenantOperation | None:
    return (
        TenantOperation.objects.filter(tenant=tenant, state__in=TenantOperation.OPEN_STATES)
        .select_related("job")
        .first()
    )


def operation_get(*, tenant: Tenant, uuid: UUID | str) -> TenantOperation:
    """An operation of this tenant; Http404 for another tenant's or a missing one."""
    op = TenantOperation.objects.filter(tenant=tenant, uuid=uuid).select_related("job", "tenant").first()
    if op is None:
        raise Http404("No such operation")
    return op


def unknown_accounts(
    *, connection_id: int | None = None, cursor: int | None = None, limit: int = 100
) -> tuple[list[UnknownProviderAccount], int | None]:
    qs = UnknownProviderAccount.objects.select_related("connection").order_by("id")
    if connection_id is not None:
        qs = qs.filter(connection_id=connection_id)
    if cursor:
        qs = qs.filter(id__gt=cursor)
    rows = list(qs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


def connections_for_forms() -> list[ProviderConnection]:
    return list(ProviderConnection.objects.filter(is_active=True).order_by("name"))


def connection_names() -> dict[int, ProviderConnection]:
    return {c.pk: c for c in ProviderConnection.objects.all()}


def console_summary() -> dict[str, Any]:
    """The console home's tenants panel (composed by console/views.py): operations that
    wait for a human, and how many are still running. Two indexed queries, no table count."""
    attention = list(
        TenantOperation.objects.filter(state=TenantOperation.State.NEEDS_ATTENTION)
        .select_related("tenant")
        .order_by("-id")[:10]
    )
    running = TenantOperation.objects.filter(
        state__in=[s for s in TenantOperation.OPEN_STATES if s != TenantOperation.State.NEEDS_ATTENTION]
    ).count()
    return {
        "tenant_ops_attention": attention,
        "tenant_ops_running": running,
        "console_panels": ["tenants/_console_panel.html"],
    }


def _owners(tenant_id: int) -> QuerySet[User]:
    return User.objects.filter(
        membership__tenant_id=tenant_id, groups__name=Role.CUSTOMER_OWNER, is_active=True
    ).exclude(email="")


def owner_emails(tenant_id: int) -> list[str]:
    """The addresses of the tenant's active owners, sorted: who gets the tenant's own emails."""
    return sorted({u.email for u in _owners(tenant_id)})


def owner_languages(tenant_id: int) -> list[tuple[str, str]]:
    """(address, Membership.language) of each active owner, sorted by address; the language is
    empty for an owner who never chose one (tenants.mail turns it into the default)."""
    return sorted(set(_owners(tenant_id).values_list("email", "membership__language")))

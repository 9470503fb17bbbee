"""Audit events as sentences a person reads: "anna moved 100.00 USD to Acme Ltd (transfer #12)".

One place turns an event (its action and its data) into a sentence. portal knows nothing
about tenants or money, so each app says how its own actions read, in a module named
``<app>/audit_words.py`` that calls :func:`register` (wording) and :func:`register_reference`
(how an id in the data becomes a name and a link). The modules are found by that name the
first time a sentence is needed, like Django's ``admin.py``.

A wording is either a template or a function of :class:`Said`. A template names the actor,
the tenant and data keys in braces; a part in square brackets is left out when a key in it
is empty: ``"{actor} froze {tenant}[: {reason}]"``. An action no app words reads as a
generic sentence: the action in words and the data as "key: value" pairs (yes/no for
booleans, no braces), ids resolved where a reference knows them.
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils.html import conditional_escape, format_html
from django.utils.module_loading import autodiscover_modules
from django.utils.safestring import SafeString, mark_safe

from portal.models import AuditEvent
from portal.money_format import money

#: (label, url or None) for one referenced object.
Ref = tuple[str, str | None]
#: Given the keys of one kind found in a page of events, their labels and links.
Resolver = Callable[[set[str]], Mapping[str, Ref]]
Wording = str | Callable[["Said"], str]


@dataclass
class _Registry:
    wordings: dict[str, Wording] = field(default_factory=dict)
    # data key (or "tenant" for the event's own tenant) -> (reference kind, resolver)
    references: dict[str, tuple[str, Resolver]] = field(default_factory=dict)
    # kind ("tenant") -> typed words -> the ids of the objects they name (the log's filters)
    finders: dict[str, Callable[[str], list[int]]] = field(default_factory=dict)
    discovered: bool = False


_registry = _Registry()


def register(wordings: Mapping[str, Wording]) -> None:
    """Word these actions (action -> template or function). Called by ``<app>/audit_words.py``."""
    _registry.wordings.update(wordings)


def register_reference(*data_keys: str, resolver: Resolver) -> None:
    """Data under any of ``data_keys`` (``"tenant"`` also means the event's tenant) names an
    object ``resolver`` can label and link."""
    for key in data_keys:
        _registry.references[key] = (data_keys[0], resolver)


def register_finder(kind: str, finder: Callable[[str], list[int]]) -> None:
    """How the audit log's ``kind`` filter turns what a person typed into ids (``tenant``)."""
    _registry.finders[kind] = finder


def find(kind: str, typed: str) -> list[int] | None:
    """The ids ``typed`` names, or None when no app knows how to search ``kind``."""
    _discover()
    finder = _registry.finders.get(kind)
    return None if finder is None else finder(typed)


def _discover() -> None:
    if not _registry.discovered:
        _registry.discovered = True
        autodiscover_modules("audit_words")


def registered_actions() -> list[str]:
    _discover()
    return sorted(_registry.wordings)


# -- plain values in words -------------------------------------------------------------------


def words_of(value: Any) -> str:
    """A stored value as a person reads it: yes/no, lists joined, nested data as pairs."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None:
        return "none"
    if isinstance(value, Mapping):
        # Sorted: PostgreSQL's jsonb keeps no insertion order, so every database reads alike.
        return "; ".join(
            f"{humanize(k)}: {words_of(v)}" for k, v in sorted(value.items()) if v not in (None, "", [], {})
        )
    if isinstance(value, list | tuple | set):
        return ", ".join(words_of(v) for v in value) or "none"
    return str(value)


def humanize(name: object) -> str:
    """``money_on_hold`` -> "money on hold"; ``tenants.tenant.edit_failed`` -> "tenant edit failed"."""
    text = str(name)
    if text.count(".") >= 2:
        text = " ".join(text.split(".")[1:])
    return text.replace("_", " ").replace(".", " ").strip()


def actor_url(username: str) -> str:
    """The audit log filtered to one person's events: where a name in a sentence leads."""
    return f"{reverse('audit')}?{urlencode({'actor': username})}"


def _link(label: str, url: str | None) -> str:
    return format_html('<a href="{}">{}</a>', url, label) if url else conditional_escape(label)


# -- one event -------------------------------------------------------------------------------


class Said:
    """What a wording reads from one event: the actor, the tenant and the data, each in words."""

    def __init__(self, event: AuditEvent, refs: Mapping[tuple[str, str], Ref], people: Mapping[int, str]) -> None:
        self.event = event
        self.data: dict[str, Any] = event.data if isinstance(event.data, dict) else {"data": event.data}
        self._refs = refs
        self._people = people

    @property
    def actor(self) -> str:
        e = self.event
        if e.actor_id is None:
            label = e.actor_label if e.actor_label and e.actor_label != "system" else "The system"
            return conditional_escape(label)
        name = self._people.get(e.actor_id) or e.actor_label
        return _link(name, actor_url(e.actor_label))

    @property
    def tenant(self) -> str:
        if self.event.tenant_id is None:
            return conditional_escape(self.data.get("company_name") or "a tenant")
        return self.ref("tenant", self.event.tenant_id)

    def ref(self, key: str, value: Any) -> str:
        """The object ``value`` under data key ``key`` names, as a link where one is known."""
        kind = _registry.references.get(key, (key, None))[0]
        found = self._refs.get((kind, str(value)))
        if found is None:
            return conditional_escape(words_of(value))
        return _link(*found)

    def money(self, amount_key: str = "amount", currency_key: str = "currency") -> str:
        amount = self.data.get(amount_key)
        if amount in (None, ""):
            return ""
        try:
            value = Decimal(str(amount))
        except InvalidOperation:
            return conditional_escape(str(amount))
        return conditional_escape(money(value, str(self.data.get(currency_key) or "")).strip())

    def value(self, key: str) -> str:
        """The data under ``key`` in words ("" when absent or empty), resolved when it is a reference."""
        if key in ("actor", "tenant"):
            return str(getattr(self, key))
        if key.endswith("_money"):
            return self.money(key.removesuffix("_money"))
        raw = self.data.get(key)
        if raw in (None, "", [], {}):
            return ""
        if key in _registry.references:
            return self.ref(key, raw)
        return conditional_escape(words_of(raw))

    def details(self, *, skip: Iterable[str] = ()) -> str:
        """The data not already in the sentence, as "key: value" pairs, by key (PostgreSQL's
        jsonb keeps no insertion order, so every database reads alike)."""
        left = set(skip) | {k for k, v in self.data.items() if k not in _registry.references and _is_uuid(v)}
        parts = [
            format_html("{}: {}", humanize(k), mark_safe(self.value(k)))  # noqa: S308 - value() escapes
            for k in sorted(self.data)
            if k not in left and self.value(k)
        ]
        return mark_safe("; ".join(parts))  # noqa: S308 - each part is escaped above


def uuids_among(keys: Iterable[str]) -> set[uuid.UUID]:
    """The keys that are uuids, as UUIDs (a resolver's query; the other keys are skipped)."""
    out = set()
    for k in keys:
        try:
            out.add(uuid.UUID(k))
        except ValueError:
            continue
    return out


def _is_uuid(value: object) -> bool:
    """An internal id a person cannot use (an operation's, a job's): left out of the words."""
    return isinstance(value, str) and bool(_UUID.fullmatch(value))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


def _fields(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def fill(text: str, said: Said) -> str:
    """A template's sentence: braces filled from ``said``, bracketed parts kept when all filled."""

    def one(part: str) -> str:
        values = {name: said.value(name) for name in _fields(part)}
        if not values:
            return mark_safe(part)  # noqa: S308 - the wording's own text, written in code
        return format_html(part, **{k: mark_safe(v) for k, v in values.items()})  # noqa: S308 - value() escapes

    def optional(match: re.Match[str]) -> str:
        part = match.group(1)
        return one(part) if all(said.value(n) for n in _fields(part)) else ""

    pieces: list[str] = []
    last = 0
    for match in _OPTIONAL.finditer(text):
        pieces.append(one(text[last : match.start()]))
        pieces.append(optional(match))
        last = match.end()
    pieces.append(one(text[last:]))
    return mark_safe("".join(pieces))  # noqa: S308 - every piece went through format_html


def generic(said: Said) -> str:
    """An action no app words: who did what, to which tenant, with the data as pairs."""
    what = humanize(said.event.action)
    where = format_html(" for {}", mark_safe(said.tenant)) if said.event.tenant_id else ""  # noqa: S308
    details = said.details()
    tail = format_html(": {}", details) if details else ""
    return format_html("{}: {}{}{}", mark_safe(said.actor), what, where, tail)  # noqa: S308 - escaped above


@dataclass
class Sentence:
    event: AuditEvent
    html: SafeString

    @property
    def text(self) -> str:
        """The sentence without links, for CSV files."""
        from html import unescape

        from django.utils.html import strip_tags

        return unescape(strip_tags(self.html))


def _resolve(events: list[AuditEvent]) -> dict[tuple[str, str], Ref]:
    wanted: dict[str, tuple[Resolver, set[str]]] = {}
    for e in events:
        pairs: list[tuple[str, Any]] = [("tenant", e.tenant_id)] if e.tenant_id is not None else []
        if isinstance(e.data, dict):
            pairs += [(k, v) for k, v in e.data.items() if k in _registry.references and v not in (None, "")]
        for key, value in pairs:
            if key not in _registry.references or isinstance(value, dict | list):
                continue
            kind, resolver = _registry.references[key]
            wanted.setdefault(kind, (resolver, set()))[1].add(str(value))
    found: dict[tuple[str, str], Ref] = {}
    for kind, (resolver, keys) in wanted.items():
        for key, ref in resolver(keys).items():
            found[(kind, key)] = ref
    return found


def _people(events: list[AuditEvent]) -> dict[int, str]:
    ids = {e.actor_id for e in events if e.actor_id is not None}
    if not ids:
        return {}
    users = get_user_model().objects.filter(pk__in=ids)
    return {u.pk: (u.get_full_name() or u.get_username()) for u in users}


def sentences(events: Iterable[AuditEvent]) -> list[Sentence]:
    """Each event as a sentence; the objects they name are looked up once for all of them."""
    _discover()
    rows = list(events)
    refs, people = _resolve(rows), _people(rows)
    out = []
    for e in rows:
        said = Said(e, refs, people)
        wording = _registry.wordings.get(e.action)
        try:
            if wording is None:
                html = generic(said)
            elif isinstance(wording, str):
                html = fill(wording, said)
            else:
                html = wording(said)
        except (KeyError, ValueError, TypeError, AttributeError):
            # Data written by an older version may lack what today's wording expects.
            html = generic(said)
        out.append(Sentence(e, mark_safe(html)))  # noqa: S308 - renderers escape through format_html
    return out


def sentence(event: AuditEvent) -> Sentence:
    return sentences([event])[0]

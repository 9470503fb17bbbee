"""The table of allowed transfer moves is the state diagram in docs/money.md, edge for edge;
a move outside it raises before anything is written; and the ledger rows each outcome
writes, per direction, are exactly the documented ones."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from billing.models import JournalEntry, ResellerBudget, Transfer
from billing.transitions import INITIAL, TRANSITIONS, IllegalTransition, check_move, ledger_close, transition

DOC = Path(__file__).resolve().parents[2] / "docs" / "money.md"
START = "[*]"
EDGE = re.compile(r"^\s*(\[\*\]|\w+)\s*-->\s*(\[\*\]|\w+)\s*(?::.*)?$")
State = Transfer.State


def _diagram() -> set[tuple[str, str]]:
    """The edges of the stateDiagram block under "The transfer state diagram"."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## The transfer state diagram", 1)[1]
    block = re.search(r"```mermaid\n(.*?)```", section, re.S)
    assert block is not None, "docs/money.md has no mermaid block under its state diagram heading"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert lines[0].strip().startswith("stateDiagram"), lines[0]
    edges = set()
    for line in lines[1:]:
        match = EDGE.match(line)
        assert match is not None, f"not an edge: {line!r}"
        edges.add((match.group(1), match.group(2)))
    return edges


def _table() -> set[tuple[str, str]]:
    return {(str(source), str(target)) for source, targets in TRANSITIONS.items() for target in targets}


def test_the_diagram_and_the_table_have_the_same_moves() -> None:
    diagram = {(a, b) for a, b in _diagram() if START not in (a, b)}
    table = _table()
    assert diagram - table == set(), "in docs/money.md but not in TRANSITIONS"
    assert table - diagram == set(), "in TRANSITIONS but not in docs/money.md"


def test_the_diagram_starts_at_the_initial_state_and_ends_at_the_final_ones() -> None:
    edges = _diagram()
    assert {b for a, b in edges if a == START} == {INITIAL}
    ends = {a for a, b in edges if b == START}
    assert ends == {s for s, targets in TRANSITIONS.items() if not targets}
    assert ends == set(Transfer.TERMINAL)


def test_the_table_covers_every_state_and_names_no_other() -> None:
    assert set(TRANSITIONS) == set(State.values)
    assert set().union(*TRANSITIONS.values()) <= set(State.values)


def test_a_move_outside_the_table_raises_and_every_move_inside_it_passes() -> None:
    for source in State.values:
        for target in State.values:
            if target in TRANSITIONS[source]:
                check_move(source, target)
            else:
                with pytest.raises(IllegalTransition):
                    check_move(source, target)


# -- against the database ----------------------------------------------------------------------


def _transfer(direction: str, *, state: str = State.SENDING, tag: str = "") -> Transfer:
    from tenants.models import ProviderConnection, Tenant

    tag = f"{direction}-{state}{tag}"

    connection = ProviderConnection.objects.create(
        name=f"table-{tag}", kind="voximplant", base_url="http://127.0.0.1:9", currency="USD"
    )
    tenant = Tenant.objects.create(
        company_name=f"Table {tag}",
        connection=connection,
        provider_account_id=4242,
        account_name=f"table{tag}",
        account_email=f"table-{tag}@tenants.example",
        status="active",
        currency="USD",
    )
    now = timezone.now()
    return Transfer.objects.create(
        tenant=tenant,
        connection=connection,
        child_account_id=4242,
        direction=direction,
        amount=Decimal("12.34"),
        currency="USD",
        reason="table test",
        payment_reference=f"rp-table-{tag}",
        dup_check_from=now - timedelta(hours=48),
        state=state,
        attempt=1,
    )


@pytest.mark.django_db
def test_an_illegal_transition_writes_nothing(django_assert_num_queries: Any) -> None:
    transfer = _transfer(Transfer.Direction.TO_TENANT, state=State.SUCCEEDED)
    with django_assert_num_queries(0), pytest.raises(IllegalTransition):
        transition(transfer, to=State.PENDING, from_states=[State.SUCCEEDED], attempt=1, now=timezone.now())
    transfer.refresh_from_db()
    assert transfer.state == State.SUCCEEDED


@pytest.mark.django_db
def test_a_stale_attempt_is_fenced_off() -> None:
    transfer = _transfer(Transfer.Direction.TO_TENANT)
    assert not transition(transfer, to=State.UNKNOWN, from_states=[State.SENDING], attempt=0, now=timezone.now())
    transfer.refresh_from_db()
    assert transfer.state == State.SENDING
    assert transition(transfer, to=State.UNKNOWN, from_states=[State.SENDING], attempt=1, now=timezone.now())
    transfer.refresh_from_db()
    assert transfer.state == State.UNKNOWN


LEGS = {
    # (direction, entry kind): the lines written, and what the budget counter gains.
    (Transfer.Direction.TO_TENANT, JournalEntry.Kind.SETTLE): (
        {("in_flight", None, "-12.34"), ("tenant", True, "12.34")},
        "0",
    ),
    (Transfer.Direction.TO_PARENT, JournalEntry.Kind.SETTLE): (
        {("in_flight", None, "-12.34"), ("reseller", None, "12.34")},
        "12.34",
    ),
    (Transfer.Direction.TO_TENANT, JournalEntry.Kind.RELEASE): (
        {("in_flight", None, "-12.34"), ("reseller", None, "12.34")},
        "12.34",
    ),
    (Transfer.Direction.TO_PARENT, JournalEntry.Kind.RELEASE): (
        {("in_flight", None, "-12.34"), ("tenant", True, "12.34")},
        "0",
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("direction", "kind"), list(LEGS))
def test_settle_and_release_write_the_documented_rows(direction: str, kind: str) -> None:
    transfer = _transfer(direction, tag=kind)
    budget = ResellerBudget.objects.create(connection=transfer.connection, currency="USD", available=Decimal("100"))
    ledger_close(transfer, kind)
    entries = list(JournalEntry.objects.filter(transfer=transfer))
    assert len(entries) == 1
    entry = entries[0]
    assert (entry.kind, entry.currency, entry.memo) == (kind, "USD", transfer.payment_reference)
    lines = {
        (line.account, True if line.tenant_id == transfer.tenant_id else None, str(line.amount.normalize()))
        for line in entry.lines.all()
    }
    expected, budget_gain = LEGS[(direction, kind)]
    assert lines == expected
    assert all(line.connection_id == transfer.connection_id for line in entry.lines.all())
    budget.refresh_from_db()
    assert budget.available == Decimal("100") + Decimal(budget_gain)

"""The two walks: every child exactly once while children are added, and the full
transaction history of a window past the 10,000 offset cap."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from providers.errors import PagingError
from providers.voximplant import ServiceAccountCredentials, VoximplantClient

from .conftest import SandboxEnv

PASSWORD = "Sandbox-Pa55word!"


def seed_children(env: SandboxEnv, n: int) -> None:
    from sandbox.seed import seed_children as seed

    seed(str(env.db_path), n, seed=7)


# -- children ----------------------------------------------------------------------------------------


def requests_seen(env: SandboxEnv) -> int:
    return int(env.admin("GET", "faults").json()["requests_seen"])


def remove_children(env: SandboxEnv, ids: list[int]) -> None:
    """Children vanish at the provider (as when support deletes them)."""
    from sandbox.store import Store

    store = env.store()
    try:
        with store.write() as conn:
            conn.execute(f"DELETE FROM accounts WHERE account_id IN ({','.join('?' * len(ids))})", ids)
            Store.bump_accounts_version(conn)
    finally:
        store.close()


def test_iter_children_yields_every_child_once_with_full_info(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    seed_children(env, 57)
    before = requests_seen(env)
    pages = list(vox.iter_children_pages(page_size=10))
    # One call per page; each call after the first re-reads the last child already seen.
    assert [len(p) for p in pages] == [10, 9, 9, 9, 9, 9, 2]
    assert requests_seen(env) - before == len(pages)
    ids = [c.account_id for page in pages for c in page]
    assert len(ids) == len(set(ids)) == 57 == env.store().children_count()
    assert ids == sorted(ids)
    assert all(c.account_name and c.balance is not None and isinstance(c.balance, Decimal) for p in pages for c in p)


def test_iter_children_ids_pages_the_brief_listing_when_asked(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    seed_children(env, 23)
    assert vox.iter_children_ids(id_page_size=5) == vox.iter_children_ids()
    assert len(vox.iter_children_ids(id_page_size=5)) == 23


def test_iter_children_stays_correct_when_children_are_added_mid_walk(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    seed_children(env, 40)
    before = set(vox.iter_children_ids())
    seen: Counter[int] = Counter()
    added = []
    for n, page in enumerate(vox.iter_children_pages(page_size=7)):
        seen.update(c.account_id for c in page)
        # Names that sort first: an offset walk ordered by name would shift under them.
        added.append(
            vox.add_account(
                account_name=f"a{n:04d}-new", account_email=f"new{n}@tenants.example", account_password=PASSWORD
            ).account_id
        )
    assert before <= set(seen)  # nothing skipped
    assert max(seen.values()) == 1  # nothing repeated
    # Newcomers get larger ids, so the walk still under way picks them up; the one added
    # after the last page shows up on the next walk.
    assert set(added[:-1]) <= set(seen) and added[-1] not in seen
    assert set(added) <= {c.account_id for c in vox.iter_children()}


def test_iter_children_skips_nothing_when_walked_children_are_removed(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    seed_children(env, 40)
    everyone = vox.iter_children_ids()
    seen: Counter[int] = Counter()
    removed: list[int] = []
    for page in vox.iter_children_pages(page_size=7):
        seen.update(c.account_id for c in page)
        # Remove two children the walk has already passed: a plain offset walk would now
        # jump over two children it has not seen.
        walked = [i for i in everyone if i in seen and i not in removed][:2]
        if len(walked) == 2:
            remove_children(env, walked)
            removed.extend(walked)
    assert len(removed) >= 8
    assert set(seen) == set(everyone)  # every child that existed when its turn came
    assert max(seen.values()) == 1


def test_balance_pages_carry_the_same_facts_as_the_full_walk(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    seed_children(env, 23)
    full = {c.account_id: c for c in vox.iter_children()}
    pages = list(vox.iter_balance_pages(page_size=10))
    assert [p.total_count for p in pages] == [23, 23, 23]
    snapshots = [s for p in pages for s in p.accounts]
    assert [s.account_id for s in snapshots] == sorted(full)
    for s in snapshots:
        info = full[int(s.account_id)]
        assert (s.name, s.email, s.active, s.frozen, s.balance, s.currency, s.credit_limit) == (
            info.account_name,
            info.account_email,
            info.active,
            info.frozen,
            info.balance,
            info.currency,
            info.credit_limit,
        )
        assert isinstance(s.balance, Decimal)
    assert [list(p) for p in vox.iter_account_pages(page_size=10)] == [list(p.accounts) for p in pages]


def test_a_naive_offset_walk_by_name_does_break_under_the_same_additions(
    env: SandboxEnv, vox: VoximplantClient
) -> None:
    """Control for the test above: the hazard is real in this sandbox."""
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    seed_children(env, 40)
    seen: Counter[int] = Counter()
    offset = 0
    n = 0
    while True:
        page = vox.get_children_accounts(count=7, offset=offset, order_by="child_account_name")
        seen.update(c.account_id for c in page.accounts)
        if len(page.accounts) < 7:
            break
        offset += len(page.accounts)
        vox.add_account(
            account_name=f"a{n:04d}-new", account_email=f"new{n}@tenants.example", account_password=PASSWORD
        )
        n += 1
    assert max(seen.values()) > 1  # rows seen twice (and, with removals, rows skipped)


def test_iter_children_filters_active(env: SandboxEnv, vox: VoximplantClient) -> None:
    env.set_options(children_require_filter=False)  # this test reads the listing of every child
    a = vox.add_account(account_name="child-on", account_email="on@t.example", account_password=PASSWORD, active=True)
    vox.add_account(account_name="child-off", account_email="off@t.example", account_password=PASSWORD)
    assert [c.account_id for c in vox.iter_children(active=True)] == [a.account_id]


def _stub_client(rsa_pem: str, handler: Any) -> VoximplantClient:
    creds = ServiceAccountCredentials.from_mapping({"account_id": 1, "key_id": "k", "private_key": rsa_pem})
    return VoximplantClient(credentials=creds, base_url="http://stub", transport=httpx.MockTransport(handler))


def test_an_inconsistent_listing_is_a_paging_error(rsa_pem: str) -> None:
    """A provider answering a page out of id order (here the same id twice) must fail
    loudly rather than sync part of the children. Served by a stub: a consistent sandbox
    cannot produce it."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"result": [{"account_id": 5}, {"account_id": 5}], "total_count": 2, "count": 2}
        )

    client = _stub_client(rsa_pem, handler)
    with pytest.raises(PagingError):
        list(client.iter_children())
    with pytest.raises(PagingError):
        list(client.iter_balance_pages())


def test_a_provider_ignoring_the_offset_is_a_paging_error_not_an_endless_walk(rsa_pem: str) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        rows = [{"account_id": i} for i in range(1, 4)]
        return httpx.Response(200, json={"result": rows, "total_count": 9, "count": 3})

    client = _stub_client(rsa_pem, handler)
    with pytest.raises(PagingError):
        list(client.iter_balance_pages(page_size=3))
    assert calls < 20


# -- transaction history ----------------------------------------------------------------------------------


def seed_history(env: SandboxEnv, start: datetime, n: int, step_seconds: float) -> list[int]:
    """Insert ``n`` parent transactions, one every ``step_seconds`` from ``start``."""
    from sandbox.store import Store

    store = Store(str(env.db_path))
    ids = []
    with store.write() as conn:
        for i in range(n):
            ids.append(
                Store.add_transaction(
                    conn,
                    account_id=env.account_id,
                    amount=-(i % 97 + 1),
                    currency="USD",
                    transaction_type="resource_charge",
                    ts=int(start.timestamp() + i * step_seconds),
                    description=f"seeded {i}",
                )
            )
    store.close()
    return ids


def test_history_windows_split_when_a_window_would_pass_the_offset_cap(env: SandboxEnv, vox: VoximplantClient) -> None:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    ids = seed_history(env, start, 600, step_seconds=7)
    end = start + timedelta(seconds=600 * 7)
    # A small cap makes the split happen on a small data set; rows sit on every boundary.
    rows = list(
        vox.iter_transaction_history(
            from_date=start, to_date=end, page_size=20, offset_cap=50, transaction_type="resource_charge"
        )
    )
    assert [r.transaction_id for r in rows] == ids
    assert [r.performed_at for r in rows] == sorted(r.performed_at for r in rows)
    assert all(isinstance(r.amount, Decimal) and r.amount < 0 for r in rows)


def test_history_more_than_ten_thousand_rows_in_a_window(env: SandboxEnv, vox: VoximplantClient) -> None:
    """12,500 rows in one window; offset paging alone reaches at most 11,000."""
    start = datetime(2025, 4, 1, tzinfo=UTC)
    ids = seed_history(env, start, 12_500, step_seconds=1)
    end = start + timedelta(hours=4)
    first = vox.get_transaction_history(from_date=start, to_date=end, count=1000, transaction_type="resource_charge")
    assert first.total_count == 12_500
    seen = [
        r.transaction_id
        for r in vox.iter_transaction_history(from_date=start, to_date=end, transaction_type="resource_charge")
    ]
    assert len(seen) == len(set(seen)) == 12_500
    assert seen == ids


def test_history_too_dense_to_split_is_a_paging_error(env: SandboxEnv, vox: VoximplantClient) -> None:
    start = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)
    seed_history(env, start, 30, step_seconds=0)  # 30 rows in the same second
    with pytest.raises(PagingError):
        list(
            vox.iter_transaction_history(
                from_date=start,
                to_date=start + timedelta(seconds=1),
                page_size=5,
                offset_cap=10,
                transaction_type="resource_charge",
            )
        )


def test_history_walk_reads_a_small_window_in_one_call(env: SandboxEnv, vox: VoximplantClient) -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC)
    ids = seed_history(env, start, 15, step_seconds=60)
    rows = list(
        vox.iter_transaction_history(
            from_date=start, to_date=start + timedelta(hours=1), transaction_type=["resource_charge"]
        )
    )
    assert [r.transaction_id for r in rows] == ids
    assert env.admin("GET", "faults").json()["requests_seen"] == 1


_window_counter = iter(range(1, 10_000))


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=120), min_size=0, max_size=150),
    page_size=st.integers(min_value=1, max_value=9),
    cap=st.integers(min_value=3, max_value=40),
)
def test_history_walk_finds_every_row_whatever_the_distribution(
    vox_inproc: tuple[SandboxEnv, VoximplantClient], offsets: list[int], page_size: int, cap: int
) -> None:
    env, vox = vox_inproc
    # Each example gets its own day, far from the others.
    start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=next(_window_counter))
    from sandbox.store import Store

    store = Store(str(env.db_path))
    ids = []
    with store.write() as conn:
        for i, offset in enumerate(sorted(offsets)):
            ids.append(
                Store.add_transaction(
                    conn,
                    account_id=env.account_id,
                    amount=-1,
                    currency="USD",
                    transaction_type="resource_charge",
                    ts=int(start.timestamp()) + offset,
                    description=f"h{i}",
                )
            )
    store.close()
    per_second = Counter(offsets)
    walk = vox.iter_transaction_history(
        from_date=start,
        to_date=start + timedelta(seconds=120),
        page_size=page_size,
        offset_cap=cap,
        transaction_type="resource_charge",
    )
    try:
        rows = list(walk)
    except PagingError:
        # Only legitimate when a window that cannot be split (two adjacent seconds) holds
        # more than `cap` rows.
        assert any(n + per_second.get(s + 1, 0) > cap for s, n in per_second.items())
        return
    assert sorted(r.transaction_id for r in rows) == sorted(ids)
    assert len(rows) == len(set(r.transaction_id for r in rows))
    assert [r.performed_at for r in rows] == sorted(r.performed_at for r in rows)

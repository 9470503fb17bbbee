"""The capability probe: the portal asks the provider which methods it still answers.

Client level (providers.voximplant.probe) over a real socket to the sandbox, then the portal
level (tenants.capability_probe): what is stored, the nightly task, what a failed probe keeps,
and the pages that show it.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.urls import reverse

from providers.capabilities import AVAILABLE, MISSING, UNKNOWN
from sandbox.voximplant import Voximplant

PROBED = (
    "TransferMoneyToChildAccount",
    "GetChildrenAccounts",
    "SetChildAccountInfo",
    "CloneAccount",
    "AddAccount",
    "GetTransactionHistory",
    "GetAccountInfo",
    "SetAccountInfo",
    "AddUser",
    "GetUsers",
    "SetUserInfo",
    "DelUser",
    "TransferMoneyToUser",
    "GetAccountPlans",
    "GetAvailablePlans",
    "ChangeAccountPlan",
    "GetAccountDocuments",
)


def served(method: str) -> str:
    """What the probe must find for a method on an untouched sandbox: it emulates most of the
    methods, and any it does not emulate it answers as an unknown command."""
    return AVAILABLE if method in Voximplant.METHODS else MISSING


def sandbox_state(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the sandbox's state file."""
    conn = sqlite3.connect(str(db_path))
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


# -- the client --------------------------------------------------------------------------------


def test_every_method_the_sandbox_serves_is_found_available(socket_env: Any) -> None:
    found = socket_env.vox().probe_methods()
    assert set(found) == set(PROBED)
    assert found == {m: served(m) for m in PROBED}
    assert found["TransferMoneyToChildAccount"] == AVAILABLE


def test_a_withdrawn_transfer_method_is_found_missing(socket_env: Any) -> None:
    socket_env.set_options(disabled_methods="TransferMoneyToChildAccount")
    found = socket_env.vox().probe_methods()
    assert found["TransferMoneyToChildAccount"] == MISSING
    assert {m: s for m, s in found.items() if m != "TransferMoneyToChildAccount"} == {
        m: served(m) for m in PROBED if m != "TransferMoneyToChildAccount"
    }


def test_the_older_switch_is_read_the_same_way(socket_env: Any) -> None:
    socket_env.set_options(transfer_method="unknown_command")
    assert socket_env.vox().probe_methods()["TransferMoneyToChildAccount"] == MISSING
    # Forbidden for this key: the method exists, and the provider itself refuses transfers.
    socket_env.set_options(transfer_method="forbidden")
    assert socket_env.vox().probe_methods()["TransferMoneyToChildAccount"] == AVAILABLE


@pytest.mark.parametrize(
    "options",
    [
        {},
        # The most permissive readings the sandbox offers: still nothing may change.
        {
            "strict_mode_default": False,
            "addaccount_requires_parent_credentials": False,
            "amount_extra_precision": "round",
            "history_dates_required": False,
            "numeric_booleans": True,
            "get_users_requires_application": False,
            "application_name_accepts_short": True,
            "del_user_with_balance": "return",
            "user_balance_on_shared_switch": "keep",
            "transfer_all_users_shared": "skip",
        },
    ],
    ids=["defaults", "permissive"],
)
def test_the_probe_changes_nothing_at_the_provider(socket_env: Any, options: dict[str, Any]) -> None:
    client = socket_env.vox()
    child = client.add_account(
        account_name="probechild1", account_email="probe1@tenants.example", account_password="Sandbox-Pass-1!"
    )
    client.transfer_money(
        account_id=child.account_id,
        amount=Decimal("7.5"),
        payment_reference="probe-test-funding",
        check_duplicate_reference_from=datetime.now(UTC) - timedelta(days=1),
    )
    # Users with money of their own, in the reseller's own account (where the probe acts) and
    # in the child: no probe call may pay, change or delete them.
    own_id = int(client.get_own_account().account_id)
    users = {}
    for account in (own_id, int(child.account_id)):
        app = client.get_applications(account_id=account)[0]
        users[account] = client.add_user(
            account_id=account,
            user_name="probeuser",
            user_display_name="Probe user",
            user_password="Sandbox-Pass-1!",
            parent_accounting=False,
            application_id=app.application_id,
        )
        client.transfer_money_to_user(
            account_id=account, user_id=users[account], amount=Decimal("2"), user_transaction_description="funding"
        )
    if options:
        socket_env.set_options(**options)
    before = sandbox_state(socket_env.db_path)
    parent_before = client.get_own_account().balance

    found = client.probe_methods()
    assert found["TransferMoneyToChildAccount"] == AVAILABLE
    assert found["TransferMoneyToUser"] == AVAILABLE and found["ChangeAccountPlan"] == AVAILABLE

    assert sandbox_state(socket_env.db_path) == before
    assert client.get_own_account().balance == parent_before
    assert client.get_account(int(child.account_id)).balance == Decimal("5.5")
    for account, user_id in users.items():
        (user,) = client.get_users(account_id=account, user_id=user_id)
        assert user.balance == Decimal("2") and user.active


def test_an_unreachable_provider_gives_no_verdict(socket_env: Any, closed_port: int) -> None:
    client = socket_env.vox()
    client = type(client).from_files(
        base_url=f"http://127.0.0.1:{closed_port}",
        credentials_path=socket_env.credentials_path,
        timeout=(1.0, 1.0),
    )
    try:
        assert client.probe_methods() == dict.fromkeys(PROBED, UNKNOWN)
    finally:
        client.close()


def test_a_failing_provider_gives_no_verdict(socket_env: Any) -> None:
    socket_env.set_faults([{"method": "*", "kind": "http_500"}])
    assert socket_env.vox().probe_methods() == dict.fromkeys(PROBED, UNKNOWN)


def test_voiceit_has_nothing_to_probe(socket_env: Any) -> None:
    assert socket_env.voiceit().probe_methods() == {}


# -- the portal --------------------------------------------------------------------------------


def _stored(connection: Any) -> Any:
    connection.refresh_from_db()
    return connection


@pytest.mark.django_db
def test_a_probe_stores_each_method_and_when(vox_connection: Any) -> None:
    from portal.models import AuditEvent
    from tenants.capability_probe import connection_probe

    outcome = connection_probe(vox_connection)
    row = _stored(vox_connection)
    assert outcome.answered
    assert row.capabilities == {m: served(m) for m in PROBED}
    assert row.capabilities_checked_at is not None
    assert AuditEvent.objects.filter(action="tenants.connection.capabilities_probed").count() == 1


@pytest.mark.django_db
def test_the_nightly_task_updates_the_result(sandbox: Any, vox_connection: Any) -> None:
    from tenants import tasks
    from tenants.capability_probe import connection_probe

    entry = settings.CELERY_BEAT_SCHEDULE["tenants-probe-capabilities-nightly"]
    assert entry["task"] == tasks.probe_capabilities_nightly.name
    connection_probe(vox_connection)
    first = _stored(vox_connection).capabilities_checked_at
    assert vox_connection.capabilities["TransferMoneyToChildAccount"] == AVAILABLE

    sandbox.admin("PUT", "options", {"disabled_methods": "TransferMoneyToChildAccount"})
    counts = tasks.probe_capabilities_nightly.apply().get()

    row = _stored(vox_connection)
    assert counts == {"probed": 1, "answered": 1}
    assert row.capabilities["TransferMoneyToChildAccount"] == MISSING
    assert row.capabilities_checked_at >= first


@pytest.mark.django_db
def test_a_failed_probe_keeps_the_last_result(sandbox: Any, vox_connection: Any) -> None:
    from tenants.capability_probe import connection_probe

    sandbox.admin("PUT", "options", {"disabled_methods": "TransferMoneyToChildAccount"})
    connection_probe(vox_connection)
    kept = _stored(vox_connection)
    kept_caps, kept_at = dict(kept.capabilities), kept.capabilities_checked_at

    sandbox.admin("PUT", "options", {"disabled_methods": ""})
    sandbox.set_faults([{"method": "*", "kind": "http_500"}])
    outcome = connection_probe(vox_connection)
    row = _stored(vox_connection)
    assert not outcome.answered
    assert row.capabilities == kept_caps and row.capabilities_checked_at == kept_at
    assert row.capabilities["TransferMoneyToChildAccount"] == MISSING


@pytest.mark.django_db
def test_an_unreachable_provider_records_unknown_only_for_methods_never_probed(
    vox_connection: Any, closed_port: int
) -> None:
    from tenants.capability_probe import connection_probe

    vox_connection.capabilities = {"TransferMoneyToChildAccount": MISSING}
    vox_connection.base_url = f"http://127.0.0.1:{closed_port}"
    vox_connection.save()
    outcome = connection_probe(vox_connection)
    row = _stored(vox_connection)
    assert not outcome.answered
    assert row.capabilities_checked_at is None
    assert row.capabilities == {**dict.fromkeys(PROBED, UNKNOWN), "TransferMoneyToChildAccount": MISSING}


@pytest.mark.django_db
def test_unreadable_credentials_keep_the_result_too(vox_connection: Any, tmp_path: Path) -> None:
    from tenants.capability_probe import connection_probe

    vox_connection.capabilities = {"GetAccountInfo": AVAILABLE}
    vox_connection.credentials_path = str(tmp_path / "nowhere.json")
    vox_connection.save()
    outcome = connection_probe(vox_connection)
    assert not outcome.answered and outcome.error
    assert _stored(vox_connection).capabilities["GetAccountInfo"] == AVAILABLE


# -- the pages ---------------------------------------------------------------------------------


@pytest.fixture
def probed(sandbox: Any, vox_connection: Any) -> Any:
    from tenants.capability_probe import connection_probe

    sandbox.admin("PUT", "options", {"disabled_methods": "TransferMoneyToChildAccount"})
    connection_probe(vox_connection)
    return _stored(vox_connection)


def _method_state(html: str, method: str) -> str:
    marker = f'data-method="{method}" data-state="'
    assert marker in html, f"{method} is not on the page"
    return html.split(marker, 1)[1].split('"', 1)[0]


@pytest.mark.django_db
def test_the_console_home_shows_each_method_and_when_it_was_checked(
    client: Any, reseller_admin: Any, probed: Any
) -> None:
    client.force_login(reseller_admin)
    html = client.get(reverse("console:home")).content.decode()
    assert _method_state(html, "TransferMoneyToChildAccount") == MISSING
    assert _method_state(html, "GetChildrenAccounts") == AVAILABLE
    assert f"Last checked {probed.capabilities_checked_at:%Y-%m-%d %H:%M} UTC" in html
    assert "The provider no longer answers TransferMoneyToChildAccount" in html
    assert 'data-testid="check-now"' in html


@pytest.mark.django_db
def test_the_tenant_page_shows_its_connections_methods(client: Any, reseller_support: Any, probed: Any) -> None:
    from tests.factories import TenantFactory

    tenant = TenantFactory(connection=probed)
    client.force_login(reseller_support)
    html = client.get(reverse("tenants:detail", args=[tenant.uuid])).content.decode()
    assert _method_state(html, "TransferMoneyToChildAccount") == MISSING
    assert f"Last checked {probed.capabilities_checked_at:%Y-%m-%d %H:%M} UTC" in html
    # Support may look but not ask the provider again.
    assert 'data-testid="check-now"' not in html


@pytest.mark.django_db
def test_check_now_probes_at_once_and_is_audited(client: Any, sandbox: Any, reseller_admin: Any, probed: Any) -> None:
    from portal.models import AuditEvent

    sandbox.admin("PUT", "options", {"disabled_methods": ""})
    client.force_login(reseller_admin)
    url = reverse("tenants:capabilities_check", args=[probed.uuid])
    response = client.post(url, {"next": "/console/"}, follow=True)
    assert response.status_code == 200
    assert "every method answers" in response.content.decode() or "no longer answers" in response.content.decode()
    assert _stored(probed).capabilities["TransferMoneyToChildAccount"] == AVAILABLE
    click = AuditEvent.objects.get(action="tenants.connection.capabilities_check_requested")
    assert click.actor == reseller_admin and click.data["connection"] == probed.name


@pytest.mark.django_db
def test_check_now_needs_the_manage_permission(client: Any, reseller_support: Any, probed: Any) -> None:
    from portal.models import AuditEvent

    client.force_login(reseller_support)
    response = client.post(reverse("tenants:capabilities_check", args=[probed.uuid]))
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="tenants.connection.capabilities_check_requested").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_customer_gets_404_for_check_now(client: Any, other_customer: Any, probed: Any, method: str) -> None:
    import uuid

    client.force_login(other_customer)
    for target in (probed.uuid, uuid.uuid4()):
        response = getattr(client, method)(reverse("tenants:capabilities_check", args=[target]))
        assert response.status_code == 404
    assert _stored(probed).capabilities["TransferMoneyToChildAccount"] == MISSING


@pytest.mark.django_db
def test_check_now_for_a_missing_connection_is_404_for_staff(client: Any, reseller_admin: Any) -> None:
    import uuid

    client.force_login(reseller_admin)
    assert client.post(reverse("tenants:capabilities_check", args=[uuid.uuid4()])).status_code == 404


# -- on creation -------------------------------------------------------------------------------


@pytest.mark.worker
def test_a_connection_created_in_the_admin_is_probed_in_the_background(
    client: Any, sandbox: Any, celery_worker: Any
) -> None:
    import time

    from tenants.models import ProviderConnection
    from tests.factories import UserFactory

    admin_user = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(admin_user)
    sandbox.admin("PUT", "options", {"disabled_methods": "CloneAccount"})
    response = client.post(
        reverse("admin:tenants_providerconnection_add"),
        {
            "name": "Created in the admin",
            "kind": "voximplant",
            "base_url": sandbox.base_url,
            "credentials_path": str(sandbox.credentials_path),
            "parent_api_key_path": str(sandbox.parent_api_key_path),
            "voiceit_credentials_path": "",
            "currency": "USD",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    connection = ProviderConnection.objects.get(name="Created in the admin")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _stored(connection).capabilities_checked_at is None:
        time.sleep(0.2)
    assert connection.capabilities_checked_at is not None, celery_worker.log()
    assert connection.capabilities["CloneAccount"] == MISSING
    assert connection.capabilities["TransferMoneyToChildAccount"] == AVAILABLE

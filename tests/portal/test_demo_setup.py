"""`make run`'s set-up, run twice against a fresh sandbox folder."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import override_settings

from portal.roles import role_of

pytestmark = pytest.mark.django_db


def test_demo_setup_creates_everything_once_and_keeps_it(tmp_path) -> None:
    from billing.models import SyncRun
    from tenants.models import Membership, ProviderConnection, Tenant

    creds = tmp_path / "sandbox"
    with override_settings(
        PROVIDER_CREDENTIALS_DIR=creds,
        VOXIMPLANT_CREDENTIALS_FILE=str(creds / "credentials.json"),
        VOXIMPLANT_PARENT_API_KEY_FILE=str(creds / "parent_api_key"),
        VOICEIT_CREDENTIALS_FILE=str(creds / "voiceit.json"),
    ):
        out = io.StringIO()
        call_command("demo_setup", "--children", "20", stdout=out)
        first = out.getvalue()
        assert "Sandbox initialised" in first
        assert "demo-password-2024!" in first
        roles = {u.username: role_of(u) for u in User.objects.all()}
        assert roles == {
            "admin": "reseller_admin",
            "billing": "reseller_billing",
            "support": "reseller_support",
            "owner": "customer_owner",
            "viewer": "customer_viewer",
        }
        owner_tenant = Membership.objects.get(user__username="owner").tenant
        viewer_tenant = Membership.objects.get(user__username="viewer").tenant
        assert owner_tenant.company_name == "Acme Telecom"
        assert viewer_tenant.company_name == "Globex Calls"
        assert owner_tenant.provider_account_id != viewer_tenant.provider_account_id
        assert owner_tenant.balance is not None
        assert SyncRun.objects.count() == 1

        out = io.StringIO()
        call_command("demo_setup", stdout=out)
        assert "keeping its data" in out.getvalue()
        assert Tenant.objects.count() == 2
        assert ProviderConnection.objects.count() == 2
        assert User.objects.count() == 5
        assert SyncRun.objects.count() == 1


def test_a_run_on_another_sandbox_port_repoints_the_demo_connections_and_no_other(tmp_path, monkeypatch) -> None:
    from portal.models import AuditEvent
    from tenants.models import ProviderConnection
    from tests.factories import ProviderConnectionFactory

    creds = tmp_path / "sandbox"
    demo = {"Voximplant (sandbox)", "VoiceIt (sandbox)"}

    def base_urls() -> dict[str, str]:
        return dict(ProviderConnection.objects.values_list("name", "base_url"))

    with override_settings(
        PROVIDER_CREDENTIALS_DIR=creds,
        VOXIMPLANT_CREDENTIALS_FILE=str(creds / "credentials.json"),
        VOXIMPLANT_PARENT_API_KEY_FILE=str(creds / "parent_api_key"),
        VOICEIT_CREDENTIALS_FILE=str(creds / "voiceit.json"),
    ):
        monkeypatch.setenv("SANDBOX_PORT", "8001")
        call_command("demo_setup", "--children", "5", stdout=io.StringIO())
        assert base_urls() == {name: "http://127.0.0.1:8001" for name in demo}
        ProviderConnectionFactory(name="Staff's own", base_url="http://127.0.0.1:8001")

        monkeypatch.setenv("SANDBOX_PORT", "8301")
        out = io.StringIO()
        call_command("demo_setup", stdout=out)
        assert base_urls() == {
            "Voximplant (sandbox)": "http://127.0.0.1:8301",
            "VoiceIt (sandbox)": "http://127.0.0.1:8301",
            "Staff's own": "http://127.0.0.1:8001",
        }
        for name in demo:
            assert f"Connection {name!r} now points at the sandbox at http://127.0.0.1:8301" in out.getvalue()
        events = AuditEvent.objects.filter(action="tenants.connection.base_url_changed")
        assert {(e.data["connection"], e.data["from"], e.data["to"], e.actor_label) for e in events} == {
            (name, "http://127.0.0.1:8001", "http://127.0.0.1:8301", "demo_setup") for name in demo
        }

        # A demo connection staff pointed at a real provider stays there.
        ProviderConnection.objects.filter(name="Voximplant (sandbox)").update(base_url="https://api.voximplant.com")
        monkeypatch.setenv("SANDBOX_PORT", "8302")
        out = io.StringIO()
        call_command("demo_setup", stdout=out)
        assert base_urls() == {
            "Voximplant (sandbox)": "https://api.voximplant.com",
            "VoiceIt (sandbox)": "http://127.0.0.1:8302",
            "Staff's own": "http://127.0.0.1:8001",
        }
        assert "Kept connection 'Voximplant (sandbox)' at https://api.voximplant.com" in out.getvalue()

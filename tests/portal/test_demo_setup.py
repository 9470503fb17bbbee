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

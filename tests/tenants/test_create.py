"""Create and clone against the sandbox: validation before any call, field errors, idempotency,
and every way a provider can fail to answer."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.crypto import decrypt_json
from portal.errors import Conflict, PortalError
from tenants.models import Tenant, TenantOperation
from tenants.services import tenant_clone, tenant_create
from tests.tenants.conftest import STRONG, actions, children, create_vox, drain, last_op, run_once, vi_accounts

pytestmark = pytest.mark.django_db


def test_it_creates_a_voximplant_child_and_keeps_its_api_key_encrypted(vox_connection, reseller_admin, sandbox):
    tenant = create_vox(vox_connection, reseller_admin, low_balance_threshold="12.50", plan="Gold")
    assert tenant.status == Tenant.Status.PROVISIONING
    assert children(sandbox) == []  # nothing is sent before the task runs
    drain()
    tenant.refresh_from_db()
    child = sandbox.store().child_by_name("acme-one")
    assert tenant.status == Tenant.Status.ACTIVE
    assert tenant.provider_account_id == child["account_id"]
    assert tenant.low_balance_threshold == Decimal("12.50")
    secrets = decrypt_json(tenant.secrets_encrypted)
    assert set(secrets) == {"api_key"} and secrets["api_key"] not in tenant.secrets_encrypted
    op = last_op(tenant)
    assert op.state == TenantOperation.State.SUCCEEDED and op.secrets_encrypted == ""  # password dropped
    assert op.job.state == "succeeded" and op.job.percent == 100
    # The threshold then goes to the provider as its own tracked operation.
    assert actions(tenant) == [
        "tenants.tenant.created",
        "tenants.tenant.provisioned",
        "tenants.threshold.push_requested",
        "tenants.threshold.pushed",
    ]


@pytest.mark.parametrize(
    "name,message",
    [
        ("abcd", "5 to 20"),
        ("a" * 21, "5 to 20"),
        ("Abcde", "start with a lowercase"),
        ("1abcde", "start with"),
        ("-abcde", "start with"),
        ("abc_de", "only lowercase"),
        ("abcdе", "only lowercase"),  # Cyrillic е
        ("abcde\n", "only lowercase"),
        ("abc de", "only lowercase"),
        ("abc\u200dde", "only lowercase"),
        ("", "Enter"),
    ],
)
def test_it_refuses_bad_account_names_before_any_call(vox_connection, reseller_admin, sandbox, name, message):
    with pytest.raises(PortalError) as caught:
        create_vox(vox_connection, reseller_admin, name=name or "x", account_name=name)
    assert caught.value.field == "account_name" and message in caught.value.message
    assert not Tenant.objects.exists() and children(sandbox) == []


@pytest.mark.parametrize("name", ["abcde", "a" * 20, "a-1-b-2"])
def test_it_accepts_names_at_the_limits(vox_connection, reseller_admin, name):
    assert create_vox(vox_connection, reseller_admin, name=name).account_name == name


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("account_email", "not-an-email", "valid account email"),
        ("account_email", "a@example.com\r\nBcc: x@example.com", "single line"),
        ("account_email", "a" * 250 + "@example.com", "254"),
        ("password", "Short-1a", "12 characters"),
        ("password", "alllowercase-but-long", "uppercase letter"),
        ("password", "NoDigitsHere-Really", "a digit"),
        ("password", "Zebra7Quokka9Lime", "special character"),
        ("password", "x" * 65, "64"),
        ("company_name", "", "Enter the company name"),
        ("company_name", "Evil\u202eCorp", "control character"),
        ("company_name", "Nul\x00Byte", "control character"),
        ("low_balance_threshold", "-1", "zero or more"),
        ("low_balance_threshold", "1e3", "zero or more"),
        ("contact_email", "nope", "valid contact email"),
        ("voiceit_type", "managed", "VoiceIt connections only"),
    ],
)
def test_every_field_gets_a_clear_message(vox_connection, reseller_admin, field, value, message):
    with pytest.raises(PortalError) as caught:
        create_vox(vox_connection, reseller_admin, **{field: value})
    assert caught.value.field == field
    assert message in caught.value.message


def test_a_common_password_is_refused(vox_connection, reseller_admin):
    with pytest.raises(PortalError) as caught:
        create_vox(vox_connection, reseller_admin, password="password")
    assert caught.value.field == "password"


def test_emails_are_unique_case_insensitively(vox_connection, reseller_admin):
    create_vox(vox_connection, reseller_admin, name="first-one", account_email="Boss@Example.com")
    with pytest.raises(PortalError) as caught:
        create_vox(vox_connection, reseller_admin, name="second-one", account_email="boss@example.COM")
    assert caught.value.field == "account_email"
    with pytest.raises(PortalError) as caught:
        create_vox(vox_connection, reseller_admin, name="first-one", account_email="other@example.com")
    assert caught.value.field == "account_name"


def test_a_generated_password_meets_voximplants_rules(vox_connection, reseller_admin, sandbox):
    tenant = create_vox(vox_connection, reseller_admin, password=None)
    op = last_op(tenant)
    password = decrypt_json(op.secrets_encrypted)["password"]
    assert len(password) >= 12 and op.params["password_generated"] is True
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE  # the sandbox accepted it


def test_the_same_operation_key_returns_the_same_tenant(vox_connection, reseller_admin, sandbox):
    first = create_vox(vox_connection, reseller_admin, operation_key="form-1234567890")
    again = create_vox(vox_connection, reseller_admin, operation_key="form-1234567890")
    assert again.pk == first.pk and Tenant.objects.count() == 1
    drain()
    assert len(children(sandbox)) == 1
    with pytest.raises(Conflict):
        create_vox(vox_connection, reseller_admin, name="other-name", operation_key="form-1234567890")


def test_a_create_applied_then_dropped_leaves_exactly_one_child(vox_connection, reseller_admin, sandbox):
    sandbox.set_faults([{"method": "AddAccount", "kind": "apply_then_drop", "count": 1}])
    tenant = create_vox(vox_connection, reseller_admin)
    op = last_op(tenant)
    run_once(op)
    op.refresh_from_db()
    tenant.refresh_from_db()
    # The reply was lost after the sandbox created the child: visible as retrying, not failed.
    assert op.state == TenantOperation.State.UNKNOWN and op.job.state == "retrying"
    assert tenant.status == Tenant.Status.PROVISIONING
    assert len(children(sandbox)) == 1
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert [c["account_name"] for c in children(sandbox)] == ["acme-one"]
    assert tenant.provider_account_id == children(sandbox)[0]["account_id"]
    assert last_op(tenant).attempt == 2
    assert actions(tenant)[-1] == "tenants.tenant.provisioned"


@pytest.mark.parametrize("kind", ["apply_then_500", "reset", "http_502", "html", "empty"])
def test_no_answer_of_any_kind_ends_with_exactly_one_child(vox_connection, reseller_admin, sandbox, kind):
    sandbox.set_faults([{"method": "AddAccount", "kind": kind, "count": 2}])
    tenant = create_vox(vox_connection, reseller_admin)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    assert len(children(sandbox)) == 1


def test_a_provider_that_keeps_timing_out_needs_attention_then_resumes(vox_connection, reseller_admin, sandbox):
    sandbox.set_faults([{"method": "AddAccount", "kind": "reset"}])
    tenant = create_vox(vox_connection, reseller_admin)
    drain()
    op = last_op(tenant)
    tenant.refresh_from_db()
    assert op.state == TenantOperation.State.NEEDS_ATTENTION and op.job.state == "needs_attention"
    assert tenant.status == Tenant.Status.PROVISIONING  # never silently failed
    assert "no answer after 6 attempts" in op.last_error
    from tenants.services import operation_retry

    sandbox.clear_faults()
    operation_retry(actor=reseller_admin, operation=op)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and len(children(sandbox)) == 1
    assert "tenants.operation.retried" in actions(tenant)


def test_a_name_the_provider_already_has_fails_on_the_name_field(vox_connection, reseller_admin, sandbox):
    from tenants.connections import client_for

    with client_for(vox_connection) as client:
        client.create_account(name="taken-name", email="elsewhere@example.com", password=STRONG)
    tenant = create_vox(vox_connection, reseller_admin, name="taken-name")
    drain()
    tenant.refresh_from_db()
    op = last_op(tenant)
    assert tenant.status == Tenant.Status.FAILED and op.state == TenantOperation.State.FAILED
    assert op.error_field == "account_name" and "already has an account named" in tenant.status_reason
    assert len(children(sandbox)) == 1
    # A failed create frees its name and email for the corrected attempt.
    create_vox(vox_connection, reseller_admin, name="fixed-name")


@pytest.mark.parametrize(
    "code,field", [(128, "account_email"), (136, "account_email"), (113, "account_name"), (524, "password"), (397, "")]
)
def test_provider_refusals_map_to_the_field_they_concern(vox_connection, reseller_admin, sandbox, code, field):
    sandbox.set_faults([{"method": "AddAccount", "kind": "error_code", "code": code, "count": 1}])
    tenant = create_vox(vox_connection, reseller_admin)
    drain()
    tenant.refresh_from_db()
    op = last_op(tenant)
    assert tenant.status == Tenant.Status.FAILED
    assert op.error_field == field
    assert children(sandbox) == []


def test_refused_credentials_need_attention_not_failure(vox_connection, reseller_admin, sandbox, tmp_path):
    sandbox.set_faults([{"method": "AddAccount", "kind": "error_code", "code": 100, "count": 1}])
    tenant = create_vox(vox_connection, reseller_admin)
    drain()
    op = last_op(tenant)
    assert op.state == TenantOperation.State.NEEDS_ATTENTION and "credentials" in op.last_error
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.PROVISIONING


def test_a_worker_killed_after_the_provider_acted_is_resolved_by_lookup(vox_connection, reseller_admin, sandbox):
    """Simulates SIGKILL between the provider's success and the record commit: the claim is
    held, the child exists, nothing was recorded. The sweeper expires the lease; the next
    attempt finds the child instead of creating a second one."""
    from datetime import timedelta

    from django.utils import timezone

    from tenants.connections import client_for
    from tenants.services.operations import _claim, operations_sweep

    tenant = create_vox(vox_connection, reseller_admin)
    op = _claim(last_op(tenant).pk)
    with client_for(vox_connection) as client:
        client.create_account(name="acme-one", email="acme-one@example.com", password=STRONG)
    TenantOperation.objects.filter(pk=op.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    operations_sweep()
    op.refresh_from_db()
    assert op.state == TenantOperation.State.UNKNOWN
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and len(children(sandbox)) == 1


def test_a_stale_worker_cannot_record_over_the_one_that_took_over(vox_connection, reseller_admin, sandbox):
    from datetime import timedelta

    from django.utils import timezone

    from tenants.services.operations import _claim, _settle, _Stale, operations_sweep

    tenant = create_vox(vox_connection, reseller_admin)
    stale = _claim(last_op(tenant).pk)
    assert _claim(stale.pk) is None  # a duplicate delivery cannot claim it meanwhile
    TenantOperation.objects.filter(pk=stale.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    operations_sweep()
    drain()
    with pytest.raises(_Stale):
        _settle(stale, state=TenantOperation.State.FAILED, message="late")
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE and len(children(sandbox)) == 1


def test_a_double_submit_while_running_does_not_start_a_second_create(vox_connection, reseller_admin, sandbox):
    create_vox(vox_connection, reseller_admin, operation_key="k-0123456789")
    with pytest.raises(PortalError):
        create_vox(vox_connection, reseller_admin, operation_key="k-abcdefghij")  # same name, new key
    drain()
    assert len(children(sandbox)) == 1


def test_it_invites_the_owner_with_a_set_password_link(
    vox_connection, reseller_admin, mailoutbox, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import User

    with django_capture_on_commit_callbacks(execute=True):
        tenant = create_vox(vox_connection, reseller_admin, invite_owner_email="Owner@Acme.example")
    user = User.objects.get(username="owner@acme.example")
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["customer_owner"]
    assert user.membership.tenant == tenant
    assert len(mailoutbox) == 1 and "/accounts/reset/" in mailoutbox[0].body
    assert "tenants.owner.invited" in actions(tenant)
    with pytest.raises(PortalError) as caught:
        create_vox(vox_connection, reseller_admin, name="second-one", invite_owner_email="OWNER@acme.example")
    assert caught.value.field == "invite_owner_email"


# --- VoiceIt -------------------------------------------------------------------------------


def _create_voiceit(connection, actor, **extra):
    values = {
        "company_name": "Voice Co",
        "account_name": "voice-co",
        "account_email": "voice@example.com",
        "password": STRONG,
        "voiceit_type": "unmanaged",
        **extra,
    }
    return tenant_create(actor=actor, connection=connection, **values)


def test_it_creates_a_voiceit_sub_account_of_the_chosen_type(voiceit_connection, reseller_admin, sandbox):
    tenant = _create_voiceit(voiceit_connection, reseller_admin)
    drain()
    tenant.refresh_from_db()
    [account] = vi_accounts(sandbox)
    assert account["type"] == "unmanaged"
    assert tenant.status == Tenant.Status.ACTIVE and tenant.provider_account_ref == account["api_key"]
    assert tenant.provider_account_id is None
    assert decrypt_json(tenant.secrets_encrypted)["api_token"] == account["api_token"]


def test_voiceit_needs_a_type(voiceit_connection, reseller_admin):
    with pytest.raises(PortalError) as caught:
        _create_voiceit(voiceit_connection, reseller_admin, voiceit_type="")
    assert caught.value.field == "voiceit_type"


def test_a_lost_voiceit_create_asks_a_human_instead_of_creating_twice(voiceit_connection, reseller_admin, sandbox):
    sandbox.set_faults([{"method": "*", "kind": "apply_then_drop", "count": 1}])
    tenant = _create_voiceit(voiceit_connection, reseller_admin)
    drain()
    op = last_op(tenant)
    assert op.state == TenantOperation.State.NEEDS_ATTENTION and "dashboard" in op.last_error
    assert len(vi_accounts(sandbox)) == 1  # applied once, and not sent again
    from tenants.services import operation_give_up

    operation_give_up(actor=reseller_admin, operation=op)
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.FAILED and len(vi_accounts(sandbox)) == 1


# --- clone ---------------------------------------------------------------------------------


def _active_vox(connection, actor, sandbox, name="source-one", **extra):
    tenant = create_vox(connection, actor, name=name, **extra)
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    return tenant


def test_it_clones_a_tenant_with_its_portal_settings(vox_connection, reseller_admin, sandbox):
    source = _active_vox(
        vox_connection, reseller_admin, sandbox, low_balance_threshold="7", plan="Gold", notes="VIP customer"
    )
    clone = tenant_clone(
        actor=reseller_admin,
        source=source,
        company_name="Acme Two",
        account_name="acme-two",
        account_email="two@example.com",
    )
    drain()
    clone.refresh_from_db()
    assert clone.status == Tenant.Status.ACTIVE
    assert (clone.plan, clone.notes, clone.low_balance_threshold) == ("Gold", "VIP customer", Decimal("7"))
    assert sandbox.store().child_by_name("acme-two")["account_id"] == clone.provider_account_id
    assert "tenants.tenant.cloned" in actions(clone)


def test_a_clone_applied_then_dropped_leaves_exactly_one_copy(vox_connection, reseller_admin, sandbox):
    source = _active_vox(vox_connection, reseller_admin, sandbox)
    sandbox.set_faults([{"method": "CloneAccount", "kind": "apply_then_drop", "count": 1}])
    clone = tenant_clone(
        actor=reseller_admin,
        source=source,
        company_name="Copy",
        account_name="copy-one",
        account_email="copy@example.com",
    )
    drain()
    clone.refresh_from_db()
    assert clone.status == Tenant.Status.ACTIVE
    assert sorted(c["account_name"] for c in children(sandbox)) == ["copy-one", "source-one"]


def test_clone_validates_like_create(vox_connection, reseller_admin, sandbox):
    source = _active_vox(vox_connection, reseller_admin, sandbox)
    with pytest.raises(PortalError) as caught:
        tenant_clone(
            actor=reseller_admin,
            source=source,
            company_name="Copy",
            account_name="source-one",
            account_email="new@example.com",
        )
    assert caught.value.field == "account_name"


def test_a_voiceit_clone_is_a_new_account_with_the_portal_settings(voiceit_connection, reseller_admin, sandbox):
    source = _create_voiceit(voiceit_connection, reseller_admin, plan="Gold", notes="VIP")
    drain()
    source.refresh_from_db()
    clone = tenant_clone(
        actor=reseller_admin, source=source, company_name="Copy", account_name="copy-one", account_email="c@example.com"
    )
    drain()
    clone.refresh_from_db()
    assert clone.status == Tenant.Status.ACTIVE and (clone.plan, clone.notes) == ("Gold", "VIP")
    assert clone.voiceit_type == "unmanaged" and len(vi_accounts(sandbox)) == 2
    assert [a["type"] for a in vi_accounts(sandbox)] == ["unmanaged", "unmanaged"]
    assert "Only the portal settings were copied: VoiceIt has no call to clone" in last_op(clone).job.message

"""Freeze, unfreeze, close, import, scan, bulk and key rotation against the sandbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal.errors import Conflict, PortalError
from tenants.models import Tenant, TenantOperation, UnknownProviderAccount
from tenants.services import (
    bulk_preview,
    bulk_start,
    operations_sweep,
    tenant_close,
    tenant_freeze,
    tenant_import,
    tenant_unfreeze,
    unknown_accounts_scan,
)
from tests.factories import TenantFactory
from tests.tenants.conftest import (
    STRONG,
    actions,
    create_vox,
    drain,
    last_op,
    provisioned_vox,
    run_once,
    vi_accounts,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def active_vox(vox_connection, reseller_admin, sandbox):
    return provisioned_vox(vox_connection, reseller_admin)


@pytest.fixture
def active_voiceit(voiceit_connection, reseller_admin, sandbox):
    from tenants.services import tenant_create

    tenant = tenant_create(
        actor=reseller_admin,
        connection=voiceit_connection,
        company_name="Voice Co",
        account_name="voice-co",
        account_email="voice@example.com",
        voiceit_type="managed",
    )
    drain()
    tenant.refresh_from_db()
    assert tenant.status == Tenant.Status.ACTIVE
    return tenant


def _child(sandbox, tenant):
    return sandbox.store().account(tenant.provider_account_id)


def test_freeze_and_unfreeze_reach_the_provider_and_the_audit(active_vox, reseller_support, sandbox):
    job = tenant_freeze(actor=reseller_support, tenant=active_vox, reason="Unpaid invoice 42")
    assert job.state == "queued"
    drain()
    active_vox.refresh_from_db()
    assert active_vox.status == Tenant.Status.FROZEN and active_vox.status_reason == "Unpaid invoice 42"
    assert not _child(sandbox, active_vox)["active"]
    job.refresh_from_db()
    assert job.state == "succeeded"
    tenant_unfreeze(actor=reseller_support, tenant=active_vox, reason="Paid")
    drain()
    active_vox.refresh_from_db()
    assert active_vox.status == Tenant.Status.ACTIVE and active_vox.status_reason == ""
    assert _child(sandbox, active_vox)["active"]
    assert actions(active_vox)[-4:] == [
        "tenants.tenant.freeze_requested",
        "tenants.tenant.frozen",
        "tenants.tenant.unfreeze_requested",
        "tenants.tenant.unfrozen",
    ]


def test_freeze_needs_a_reason(active_vox, reseller_admin):
    with pytest.raises(PortalError) as caught:
        tenant_freeze(actor=reseller_admin, tenant=active_vox, reason="   ")
    assert caught.value.field == "reason"
    assert not active_vox.operations.filter(kind="freeze").exists()


def test_a_second_click_while_freezing_is_refused(active_vox, reseller_admin, sandbox):
    tenant_freeze(actor=reseller_admin, tenant=active_vox, reason="first")
    with pytest.raises(Conflict):
        tenant_freeze(actor=reseller_admin, tenant=active_vox, reason="second")
    with pytest.raises(Conflict):
        tenant_close(actor=reseller_admin, tenant=active_vox, reason="meanwhile")


def test_only_an_active_tenant_can_be_frozen(active_vox, reseller_admin, sandbox):
    tenant_freeze(actor=reseller_admin, tenant=active_vox, reason="first")
    drain()
    active_vox.refresh_from_db()
    assert active_vox.status == Tenant.Status.FROZEN
    operations = active_vox.operations.count()
    with pytest.raises(Conflict) as caught:
        tenant_freeze(actor=reseller_admin, tenant=active_vox, reason="again")
    assert caught.value.message == "Only an active tenant can be frozen; this one is frozen."
    assert active_vox.operations.count() == operations  # refused before anything was queued
    assert actions(active_vox)[-1] == "tenants.tenant.frozen"


@pytest.mark.parametrize("status", ["provisioning", "closing", "closed", "failed"])
def test_a_tenant_in_any_other_state_cannot_be_frozen(reseller_admin, status):
    tenant = TenantFactory(status=status)
    with pytest.raises(Conflict) as caught:
        tenant_freeze(actor=reseller_admin, tenant=tenant, reason="x")
    assert caught.value.message.startswith("Only an active tenant can be frozen")
    assert not tenant.operations.exists()
    tenant.refresh_from_db()
    assert tenant.status == status


def test_only_a_frozen_tenant_can_be_unfrozen(active_vox, reseller_admin):
    with pytest.raises(Conflict) as caught:
        tenant_unfreeze(actor=reseller_admin, tenant=active_vox, reason="x")
    assert caught.value.message == "Only a frozen tenant can be unfrozen; this one is active."
    assert not active_vox.operations.filter(kind="unfreeze").exists()


def test_a_freeze_that_times_out_shows_retrying_then_succeeds(active_vox, reseller_admin, sandbox):
    sandbox.set_faults([{"method": "SetChildAccountInfo", "kind": "http_502", "count": 1}])
    job = tenant_freeze(actor=reseller_admin, tenant=active_vox, reason="late payment")
    op = last_op(active_vox)
    run_once(op)
    op.refresh_from_db()
    job.refresh_from_db()
    assert op.state == TenantOperation.State.UNKNOWN and job.state == "retrying"
    assert "retrying in" in job.message
    drain()
    active_vox.refresh_from_db()
    assert active_vox.status == Tenant.Status.FROZEN


def test_voiceit_freeze_is_unavailable_with_the_matrix_reason(active_voiceit, reseller_admin):
    with pytest.raises(Conflict) as caught:
        tenant_freeze(actor=reseller_admin, tenant=active_voiceit, reason="x")
    assert "VoiceIt has no suspend API" in caught.value.message


def test_closing_a_voiceit_tenant_deletes_the_sub_account(active_voiceit, reseller_admin, sandbox):
    job = tenant_close(actor=reseller_admin, tenant=active_voiceit, reason="Contract ended")
    active_voiceit.refresh_from_db()
    assert active_voiceit.status == Tenant.Status.CLOSING
    drain()
    active_voiceit.refresh_from_db()
    job.refresh_from_db()
    assert active_voiceit.status == Tenant.Status.CLOSED and active_voiceit.closed_at is not None
    assert vi_accounts(sandbox)[0]["deleted"] == 1
    op = last_op(active_voiceit)
    assert op.notes[0].startswith("Freeze unavailable: VoiceIt has no suspend API")
    assert op.notes[1].startswith("No balance to pull back: VoiceIt has no credit transfer")
    assert op.notes[2] == "Deleted at the provider."
    assert job.state == "succeeded" and job.done == job.total == 4
    assert actions(active_voiceit)[-1] == "tenants.tenant.closed"
    assert Tenant.objects.filter(pk=active_voiceit.pk).exists()  # the record stays


def test_a_close_resumes_from_its_last_stage_after_a_crash(active_voiceit, reseller_admin, sandbox):
    from tenants.services.operations import _claim

    tenant_close(actor=reseller_admin, tenant=active_voiceit, reason="bye")
    op = last_op(active_voiceit)
    sandbox.set_faults([{"method": "*", "kind": "http_502"}])
    run_once(op)  # freeze and pull stages need no call; delete gets no answer
    op.refresh_from_db()
    assert op.stage == TenantOperation.Stage.DELETE and op.state == TenantOperation.State.UNKNOWN
    sandbox.clear_faults()
    TenantOperation.objects.filter(pk=op.pk).update(next_attempt_at=timezone.now())
    claimed = _claim(op.pk)  # a worker claims it and dies without a word
    TenantOperation.objects.filter(pk=claimed.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    operations_sweep()
    drain()
    active_voiceit.refresh_from_db()
    assert active_voiceit.status == Tenant.Status.CLOSED
    assert vi_accounts(sandbox)[0]["deleted"] == 1


@pytest.mark.django_db(transaction=True)
def test_closing_a_voximplant_tenant_pulls_the_balance_and_leaves_it_disabled(
    active_vox, reseller_admin, sandbox, celery_eager
):
    # Transactional: billing reads the live balance and refuses to call the provider inside a
    # transaction, so the services run as in production (eager tasks after each commit).
    parent_before = sandbox.store().parent_account()["balance"]
    from tenants.connections import client_for

    with client_for(active_vox.connection) as client:
        client.transfer_money(
            account_id=active_vox.provider_account_id,
            amount=Decimal("25.00"),
            payment_reference="test-fund-1",
            check_duplicate_reference_from=timezone.now() - timedelta(days=1),
        )
    tenant_close(actor=reseller_admin, tenant=active_vox, reason="Moved away")
    for _ in range(10):  # billing's own retries, if any, run through its tasks
        drain()
        active_vox.refresh_from_db()
        if active_vox.status == Tenant.Status.CLOSED:
            break
    assert active_vox.status == Tenant.Status.CLOSED, last_op(active_vox).last_error
    child = _child(sandbox, active_vox)
    assert not child["active"] and Decimal(str(child["balance"])) == 0
    assert sandbox.store().parent_account()["balance"] == parent_before
    assert "Left disabled at the provider" in " ".join(last_op(active_vox).notes)


# --- import and scan -------------------------------------------------------------------------


def _seed_unknown(connection, account_id, **extra):
    values = {
        "account_name": f"seen-{account_id}",
        "account_email": f"seen{account_id}@example.com",
        "balance": Decimal("3.50"),
        "currency": "USD",
        "active": True,
        "last_seen_at": timezone.now(),
        **extra,
    }
    return UnknownProviderAccount.objects.create(connection=connection, provider_account_id=account_id, **values)


def test_import_adopts_an_unknown_account(vox_connection, reseller_admin):
    _seed_unknown(vox_connection, 777001)
    tenant = tenant_import(
        actor=reseller_admin, connection=vox_connection, provider_account_id=777001, company_name="Adopted Ltd"
    )
    assert tenant.status == Tenant.Status.ACTIVE and tenant.balance == Decimal("3.50")
    assert tenant.account_name == "seen-777001" and not UnknownProviderAccount.objects.exists()
    assert actions(tenant) == ["tenants.tenant.imported"]
    with pytest.raises(Conflict):
        tenant_import(actor=reseller_admin, connection=vox_connection, provider_account_id=777001)


def test_import_of_a_disabled_account_makes_a_frozen_tenant(vox_connection, reseller_admin):
    _seed_unknown(vox_connection, 777002, active=False)
    tenant = tenant_import(actor=reseller_admin, connection=vox_connection, provider_account_id=777002)
    assert tenant.status == Tenant.Status.FROZEN and tenant.company_name == "seen-777002"


def test_import_reads_an_account_the_portal_has_not_seen_yet(vox_connection, reseller_admin, sandbox):
    from tenants.connections import client_for

    with client_for(vox_connection) as client:
        made = client.create_account(name="direct-one", email="direct@example.com", password=STRONG)
    tenant = tenant_import(actor=reseller_admin, connection=vox_connection, provider_account_id=made.account_id)
    assert tenant.account_name == "direct-one" and tenant.provider_account_id == made.account_id
    with pytest.raises(PortalError) as caught:
        tenant_import(actor=reseller_admin, connection=vox_connection, provider_account_id=99999999)
    assert caught.value.field == "provider_account_id"
    with pytest.raises(PortalError) as caught:
        tenant_import(actor=reseller_admin, connection=vox_connection, provider_account_id="abc")
    assert caught.value.field == "provider_account_id"


def test_scan_lists_provider_accounts_no_tenant_stands_for(
    active_vox, reseller_admin, sandbox, django_capture_on_commit_callbacks, celery_eager
):
    from sandbox.seed import seed_children

    sandbox.admin("PUT", "options", {"children_require_filter": False})  # the scan lists every child
    seed_children(str(sandbox.db_path), 5, seed=3)
    with django_capture_on_commit_callbacks(execute=True):
        job = unknown_accounts_scan(actor=reseller_admin, connection=active_vox.connection)
    job.refresh_from_db()
    assert job.state == "succeeded", job.message
    ids = set(UnknownProviderAccount.objects.values_list("provider_account_id", flat=True))
    assert len(ids) == 5 and active_vox.provider_account_id not in ids


def test_voiceit_cannot_be_scanned(voiceit_connection, reseller_admin):
    with pytest.raises(PortalError) as caught:
        unknown_accounts_scan(actor=reseller_admin, connection=voiceit_connection)
    assert "VoiceIt has no call to list" in caught.value.message


# --- bulk ----------------------------------------------------------------------------------


def test_bulk_freeze_dry_run_then_per_row_results(
    vox_connection, reseller_admin, sandbox, active_voiceit, django_capture_on_commit_callbacks, celery_eager
):
    vox = []
    for name in ("bulk-one", "bulk-two"):
        vox.append(create_vox(vox_connection, reseller_admin, name=name))
    drain()
    ids = [vox[0].pk, vox[1].pk, active_voiceit.pk]
    preview = {r["id"]: r for r in bulk_preview(action="freeze", tenant_ids=ids)}
    assert [preview[i]["ok"] for i in ids] == [True, True, False]
    assert "VoiceIt has no suspend API" in preview[active_voiceit.pk]["message"]
    assert all(t.status == Tenant.Status.ACTIVE for t in Tenant.objects.filter(pk__in=ids))  # dry run: no change
    sandbox.set_faults([{"method": "SetChildAccountInfo", "kind": "error_code", "code": 194, "count": 1}])
    with django_capture_on_commit_callbacks(execute=True):
        job = bulk_start(actor=reseller_admin, action="freeze", ids=ids, reason="Quarterly audit")
    job.refresh_from_db()
    assert job.state == "succeeded" and job.done == 3
    by_id = {r["id"]: r for r in job.results}
    assert by_id[vox[0].pk]["ok"] is False  # the provider refused this one (fault 194)
    assert by_id[vox[1].pk]["ok"] is True
    assert by_id[active_voiceit.pk]["ok"] is False and "VoiceIt" in by_id[active_voiceit.pk]["message"]
    assert Tenant.objects.get(pk=vox[1].pk).status == Tenant.Status.FROZEN


def test_bulk_import_adopts_each_row(vox_connection, reseller_admin, django_capture_on_commit_callbacks, celery_eager):
    rows = [_seed_unknown(vox_connection, 880000 + i) for i in range(3)]
    preview = bulk_preview(action="import", unknown_ids=[r.pk for r in rows])
    assert all(r["ok"] for r in preview)
    with django_capture_on_commit_callbacks(execute=True):
        job = bulk_start(actor=reseller_admin, action="import", ids=[r.pk for r in rows])
    job.refresh_from_db()
    assert job.state == "succeeded" and all(r["ok"] for r in job.results)
    assert Tenant.objects.filter(provider_account_id__gte=880000).count() == 3


def test_bulk_needs_rows_and_a_reason(reseller_admin):
    with pytest.raises(PortalError):
        bulk_start(actor=reseller_admin, action="freeze", ids=[], reason="x")
    with pytest.raises(PortalError) as caught:
        bulk_start(actor=reseller_admin, action="freeze", ids=[1], reason="")
    assert caught.value.field == "reason"


# --- secrets ---------------------------------------------------------------------------------


def test_rotate_field_keys_moves_secrets_to_the_new_key(active_vox, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    from portal.crypto import decrypt_json

    old_token = active_vox.secrets_encrypted
    plain = decrypt_json(old_token)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, *settings.FIELD_ENCRYPTION_KEYS]
    call_command("rotate_field_keys")
    active_vox.refresh_from_db()
    assert active_vox.secrets_encrypted != old_token
    settings.FIELD_ENCRYPTION_KEYS = [new_key]  # the old key is gone
    assert decrypt_json(active_vox.secrets_encrypted) == plain


def test_the_sweeper_resumes_a_bulk_job_whose_worker_died(vox_connection, reseller_admin, celery_eager):
    from portal.models import Job

    rows = [_seed_unknown(vox_connection, 990000 + i) for i in range(2)]
    job = bulk_start(actor=reseller_admin, action="import", ids=[r.pk for r in rows])  # its message is lost
    tenant_import(actor=reseller_admin, connection=vox_connection, provider_account_id=990000)  # done before
    Job.objects.filter(pk=job.pk).update(state="running", updated_at=timezone.now() - timedelta(minutes=11))
    assert operations_sweep() == 1
    job.refresh_from_db()
    assert job.state == "succeeded"
    assert [r["ok"] for r in job.results] == [False, True]  # the first row was gone already
    assert Tenant.objects.filter(provider_account_id__in=[990000, 990001]).count() == 2

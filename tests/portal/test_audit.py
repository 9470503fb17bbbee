import pytest
from django.db import DatabaseError, transaction

from portal.audit import audit_events, audit_log
from portal.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_it_records_actor_tenant_action_data_and_request_id(rf) -> None:
    user = UserFactory(username="auditor", role="reseller_admin")
    request = rf.post("/x", REMOTE_ADDR="203.0.113.7")
    event = audit_log(
        actor=user, action="tenants.tenant.frozen", tenant_id=42, data={"reason": "unpaid"}, request=request
    )
    event.refresh_from_db()
    assert event.actor == user
    assert event.actor_label == "auditor"
    assert event.tenant_id == 42
    assert event.data == {"reason": "unpaid"}
    assert event.ip == "203.0.113.7"
    assert list(audit_events(tenant_id=42)) == [event]
    assert list(audit_events(tenant_id=43)) == []


def test_system_actions_have_a_label() -> None:
    event = audit_log(actor=None, action="billing.sync.started")
    assert event.actor is None and event.actor_label == "system"


def test_actions_must_be_dotted_names() -> None:
    with pytest.raises(ValueError, match="dotted"):
        audit_log(actor=None, action="frozen")


@pytest.mark.parametrize("operation", ["update", "delete"])
def test_the_database_refuses_to_change_or_delete_audit_rows(operation: str) -> None:
    event = audit_log(actor=None, action="portal.test.written", data={"n": 1})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        if operation == "update":
            AuditEvent.objects.filter(pk=event.pk).update(action="portal.test.rewritten")
        else:
            AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "portal.test.written"


def test_the_audit_page_is_for_reseller_admins_only(client) -> None:
    audit_log(actor=None, action="portal.test.visible", data={"k": "v"})
    for username, role, status in [
        ("a", "reseller_admin", 200),
        ("b", "reseller_billing", 403),
        ("s", "reseller_support", 403),
        ("o", "customer_owner", 404),  # the console does not exist for customers
    ]:
        client.force_login(UserFactory(username=username, role=role))
        response = client.get("/console/audit/")
        assert response.status_code == status, username
        if status == 200:
            assert b"portal.test.visible" in response.content
        client.logout()
    assert client.get("/console/audit/").status_code == 302

"""The audit log and the histories read as sentences with links; the log filters by actor,
tenant, action and dates (with messages on the fields), pages by keyset and exports a streamed
CSV of the filtered rows; only reseller admins read it, customers get 404."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from portal.audit import audit_log
from portal.audit_sentences import registered_actions, sentence, sentences
from portal.models import AuditEvent
from tenants.services import tenant_freeze
from tests.factories import TenantFactory, TransferFactory, UserFactory

pytestmark = pytest.mark.django_db

URL = "/console/audit/"
RAW = re.compile(r"[{}]|\bTrue\b|\bFalse\b|\bNone\b")


def body(response) -> str:
    return response.content.decode()


def table(html: str) -> str:
    return html[html.index('data-testid="audit"') :]


@pytest.fixture
def anna(db):
    return UserFactory(username="anna", first_name="Anna", last_name="Petrova", role="reseller_billing")


@pytest.fixture
def acme(db):
    return TenantFactory(company_name="Acme Ltd")


def test_a_transfer_reads_as_who_moved_how_much_to_whom_with_links(anna, acme) -> None:
    transfer = TransferFactory(tenant=acme, amount="100.00", currency="USD")
    audit_log(
        actor=anna,
        action="billing.transfer.created",
        tenant_id=acme.pk,
        data={"transfer": str(transfer.uuid), "direction": "to_tenant", "amount": "100.00", "currency": "USD"},
    )
    s = sentence(AuditEvent.objects.get())
    assert s.text == f"Anna Petrova moved 100.00 USD to Acme Ltd (transfer #{transfer.pk})"
    assert f'href="{reverse("tenants:detail", args=[acme.uuid])}"' in s.html
    assert f'href="{reverse("billing:transfer_detail", args=[transfer.uuid])}"' in s.html
    assert 'href="/console/audit/?actor=anna"' in s.html


def test_a_freeze_reads_as_who_froze_which_tenant_and_why(reseller_support, acme) -> None:
    tenant_freeze(actor=reseller_support, tenant=acme, reason="unpaid invoice")
    event = AuditEvent.objects.get(action="tenants.tenant.freeze_requested")
    assert sentence(event).text == "support1 froze Acme Ltd: unpaid invoice"


def test_an_unknown_action_reads_as_words_without_braces_or_python_values(acme) -> None:
    audit_log(
        actor=None,
        action="someapp.widget.polished",
        tenant_id=acme.pk,
        data={
            "shiny": True,
            "broken": False,
            "parts": {"nuts": 2},
            "operation": "6f1c3c2e-1b0a-4c51-9d7e-2f3a4b5c6d7e",
        },
    )
    text = sentence(AuditEvent.objects.get()).text
    assert text == "The system: widget polished for Acme Ltd: broken: no; parts: nuts: 2; shiny: yes"


def test_a_tenant_the_log_outlived_reads_as_words_not_a_number() -> None:
    audit_log(actor=None, action="tenants.tenant.closed", tenant_id=987654, data={"reason": "gone"})
    assert sentence(AuditEvent.objects.get()).text == "a removed tenant is closed: gone"


def test_every_worded_action_reads_as_a_sentence_even_with_sparse_data(acme, anna) -> None:
    actions = registered_actions()
    assert len(actions) > 80  # every app words its actions
    for action in actions:
        audit_log(actor=anna, action=action, tenant_id=acme.pk, data={"reason": "r", "ok": True})
    for s in sentences(AuditEvent.objects.all()):
        assert s.text and not RAW.search(s.text), (s.event.action, s.text)
        assert "Acme Ltd" in s.text or "tenant" not in s.event.action.split(".")[1], (s.event.action, s.text)


def test_the_page_shows_sentences_and_no_raw_data(client, reseller_admin, anna, acme) -> None:
    transfer = TransferFactory(tenant=acme)
    audit_log(
        actor=anna,
        action="billing.transfer.approved",
        tenant_id=acme.pk,
        data={"transfer": str(transfer.uuid), "amount": "10.00", "maker": reseller_admin.pk},
    )
    audit_log(actor=None, action="portal.login.failed", data={"username": "mallory"})
    audit_log(
        actor=anna,
        action="tenants.threshold.push_requested",
        tenant_id=acme.pk,
        data={"threshold": "5", "kept_in_portal_only": False},
    )
    client.force_login(reseller_admin)
    html = table(body(client.get(URL)))
    assert (
        f'approved <a href="{reverse("billing:transfer_detail", args=[transfer.uuid])}">transfer #{transfer.pk}</a>'
        in html
    )
    assert "A sign-in as mallory failed" in re.sub(r"<[^>]+>", "", html)
    assert not RAW.search(re.sub(r"<[^>]+>", "", html))
    assert f">{acme.pk}<" not in html


def test_filters_by_actor_tenant_action_and_dates(client, reseller_admin, anna, acme) -> None:
    other = TenantFactory(company_name="Other Corp")
    audit_log(actor=anna, action="billing.threshold.set", tenant_id=acme.pk, data={"threshold": "5"})
    audit_log(actor=reseller_admin, action="billing.threshold.set", tenant_id=other.pk, data={"threshold": "7"})
    audit_log(actor=anna, action="tenants.owner.invited", tenant_id=other.pk, data={"email": "o@example.com"})
    client.force_login(reseller_admin)

    def shown(**params) -> list[str]:
        html = table(body(client.get(URL, params)))
        return re.findall(r'data-action="([^"]+)"', html)

    assert len(shown(actor="anna")) == 2
    assert shown(tenant="acme") == ["billing.threshold.set"]
    assert shown(action="tenants.") == ["tenants.owner.invited"]
    today = timezone.now().date()
    assert len(shown(**{"from": today.isoformat(), "to": today.isoformat()})) == 3
    assert shown(**{"from": (today + timedelta(days=1)).isoformat()}) == []
    response = client.get(URL, {"tenant": "Nobody Inc"})
    assert "No tenant matches “Nobody Inc”." in body(response)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"from": "2026-13-40"}, "from", "The From date is not a real date."),
        ({"to": "yesterday"}, "to", "Enter the To date as YYYY-MM-DD."),
        ({"from": "2026-02-10", "to": "2026-02-01"}, "from", "The From date is after the To date"),
    ],
)
def test_bad_dates_are_refused_on_their_field(client, reseller_admin, params, field, message) -> None:
    client.force_login(reseller_admin)
    response = client.get(URL, params)
    assert response.status_code == 400
    html = body(response)
    assert f'id="{field}-error"' in html and message in html
    assert 'data-testid="export-csv"' not in html


def test_pages_go_back_by_keyset(client, reseller_admin, acme) -> None:
    for n in range(55):
        audit_log(actor=None, action="billing.threshold.set", tenant_id=acme.pk, data={"threshold": str(n)})
    client.force_login(reseller_admin)
    first = body(client.get(URL))
    assert first.count('data-action="billing.threshold.set"') == 50
    older = re.search(r'href="\?before=(\d+)"', first)
    assert older
    second = body(client.get(URL, {"before": older.group(1)}))
    assert second.count('data-action="billing.threshold.set"') == 5
    assert "to 0" in second and "to 54" not in second
    assert "That page link is not valid" in body(client.get(URL, {"before": "x1"}))


def test_the_csv_is_streamed_and_holds_the_filtered_rows_as_sentences(client, reseller_admin, anna, acme) -> None:
    for n in range(1203):
        audit_log(actor=anna, action="billing.threshold.set", tenant_id=acme.pk, data={"threshold": str(n)})
    audit_log(actor=reseller_admin, action="tenants.owner.invited", tenant_id=acme.pk, data={"email": "=cmd"})
    client.force_login(reseller_admin)
    response = client.get(URL, {"actor": "anna", "format": "csv"})
    assert isinstance(response, StreamingHttpResponse)
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["time_utc", "actor", "action", "sentence"]
    assert len(rows) == 1 + 1203
    assert rows[1][3] == "Anna Petrova set the low-balance threshold of Acme Ltd to 1202"
    assert rows[-1][3].endswith("to 0")
    assert {r[1] for r in rows[1:]} == {"anna"}


def test_a_csv_cell_cannot_start_a_formula(client, reseller_admin, acme) -> None:
    audit_log(actor=reseller_admin, action="tenants.owner.invited", tenant_id=acme.pk, data={"email": "=cmd"})
    client.force_login(reseller_admin)
    response = client.get(URL, {"format": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[1][3] == "admin1 invited =cmd to own Acme Ltd"


def test_only_reseller_admins_read_the_log(client, reseller_billing, reseller_support, customer_owner) -> None:
    assert client.get(URL).status_code == 302  # to the login page
    for staff in (reseller_billing, reseller_support):
        client.force_login(staff)
        assert client.get(URL).status_code == 403
        assert client.get(URL, {"format": "csv"}).status_code == 403
    client.force_login(customer_owner)
    assert client.get(URL).status_code == 404
    assert client.get(URL, {"format": "csv"}).status_code == 404


def test_the_transfer_page_history_reads_as_sentences(client, reseller_admin, anna, acme) -> None:
    transfer = TransferFactory(tenant=acme)
    audit_log(
        actor=anna,
        action="billing.transfer.created",
        tenant_id=acme.pk,
        data={
            "transfer": str(transfer.uuid),
            "direction": "to_parent",
            "amount": "3.50",
            "currency": "USD",
            "reason": "overpaid",
        },
    )
    client.force_login(reseller_admin)
    html = body(client.get(reverse("billing:transfer_detail", args=[transfer.uuid])))
    history = html[html.index('data-testid="history"') :]
    assert "pulled 3.50 USD back from" in history and "overpaid" in history
    assert "{" not in history

"""Issued invoices are immutable (the database refuses raw SQL), corrections are credit notes
in the same sequence, and the PDF, CSV and issue email carry the number and the total."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from pypdf import PdfReader

from portal.errors import PortalError
from portal.models import AuditEvent, Job
from reselling.delivery import invoice_emails_send, invoice_emails_sweep
from reselling.invoices import credit_note_create, invoice_balance, reseller_profile, reseller_profile_update
from reselling.models import Invoice, InvoiceLine, Payment
from reselling.pdf import invoice_csv, invoice_pdf
from tests.factories import CustomerFactory, TenantFactory
from tests.reselling.invoicing import charge, invoice_of, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def invoice():
    tenant = TenantFactory(company_name="Bolt Calls")
    charge(tenant, "80", description="Calls in January")
    charge(tenant, "20", kind="monthly_fee", description="Monthly fee")
    run()
    return invoice_of(tenant)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE reselling_invoice SET total = 0",
        "DELETE FROM reselling_invoice",
        "UPDATE reselling_invoiceline SET amount = 0",
        "DELETE FROM reselling_invoiceline",
    ],
)
def test_raw_sql_cannot_change_or_delete_an_issued_invoice(invoice, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    invoice.refresh_from_db()
    assert invoice.total == Decimal("100.0000") and InvoiceLine.objects.filter(invoice=invoice).count() == 2


def test_a_partial_credit_note_is_numbered_in_sequence_and_audited(invoice, reseller_billing):
    note = credit_note_create(actor=reseller_billing, invoice=invoice, amount="30", reason="Outage on the 3rd")
    assert note.kind == "credit_note" and note.corrects == invoice
    assert note.sequence == invoice.sequence + 1 and note.total == Decimal("30")
    assert invoice_balance(invoice).due == Decimal("70") and invoice_balance(invoice).credited == Decimal("30")
    event = AuditEvent.objects.get(action="reselling.credit_note.created")
    assert event.data["reason"] == "Outage on the 3rd" and event.data["credit_note"] == note.number
    with pytest.raises(PortalError, match="At most 70.00 USD") as refused:
        credit_note_create(actor=reseller_billing, invoice=invoice, amount="70.01", reason="Too much")
    assert refused.value.field == "amount"
    rest = credit_note_create(actor=reseller_billing, invoice=invoice, amount="", reason="Goodwill")
    assert rest.total == Decimal("70") and invoice_balance(invoice).status == "paid"
    with pytest.raises(PortalError, match="fully credited"):
        credit_note_create(actor=reseller_billing, invoice=invoice, reason="Again")


def test_credit_notes_need_a_reason_and_the_money_permission(invoice, reseller_billing, reseller_support):
    with pytest.raises(PortalError) as no_reason:
        credit_note_create(actor=reseller_billing, invoice=invoice, amount="1", reason=" ")
    assert no_reason.value.field == "reason"
    with pytest.raises(PortalError, match="may not"):
        credit_note_create(actor=reseller_support, invoice=invoice, amount="1", reason="No right")
    assert not Invoice.objects.filter(kind="credit_note").exists()


def test_the_pdf_parsed_back_shows_the_number_lines_and_total(invoice):
    profile = reseller_profile()
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(invoice_pdf(invoice))).pages)
    assert f"Invoice {invoice.number}" in text
    assert "Calls in January" in text and "Bolt Calls" in text and profile.company_name in text
    assert "Total USD" in text and "100.00" in text


def test_the_csv_has_a_row_per_line_and_the_totals(invoice):
    rows = invoice_csv(invoice).splitlines()
    assert rows[0].startswith("number,kind,issued")
    assert any("Calls in January" in r and r.endswith(",80.00,USD") for r in rows)
    assert rows[-1].endswith("Total,,100.00,USD") and invoice.number in rows[-1]


def test_issue_emails_go_to_the_owners_with_the_pdf_once_and_resume_after_a_failure(mailoutbox, monkeypatch):
    tenants = [TenantFactory(company_name=f"Mail Co {n}") for n in range(3)]
    for n, tenant in enumerate(tenants):
        CustomerFactory(username=f"mail-owner-{n}", tenant=tenant, email=f"owner{n}@mail.example")
        charge(tenant, "5")
    done = run()
    job = Job.objects.get(kind="reselling.invoice_emails", params__run_id=done.pk)
    # The second send fails: the job keeps its position and the sweeper retries from there.
    from django.core.mail import EmailMultiAlternatives

    original, calls = EmailMultiAlternatives.send, {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("SMTP down")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(EmailMultiAlternatives, "send", flaky)
    assert invoice_emails_send(job_id=job.pk) == 1
    job.refresh_from_db()
    assert job.state == "queued" and job.params["after"] == invoice_of(tenants[0]).pk
    Job.objects.filter(pk=job.pk).update(updated_at=job.updated_at.replace(year=2000))
    queued = []
    monkeypatch.setattr("reselling.delivery._enqueue", queued.append)
    assert invoice_emails_sweep() == [job.pk]
    assert invoice_emails_send(job_id=job.pk) == 2
    assert invoice_emails_send(job_id=job.pk) == 0  # finished: nothing is sent twice
    assert sorted(m.to[0] for m in mailoutbox) == ["owner0@mail.example", "owner1@mail.example", "owner2@mail.example"]
    message = mailoutbox[0]
    first = invoice_of(tenants[0])
    assert first.number in message.subject and "5.00 USD" in message.body
    assert message.alternatives and first.number in message.alternatives[0][0]
    name, content, mimetype = message.attachments[0]
    assert mimetype == "application/pdf" and name == f"invoice-{first.number}.pdf"
    assert first.number in PdfReader(io.BytesIO(content)).pages[0].extract_text()


def test_the_company_details_are_seeded_from_settings_and_edited_by_admins(settings, reseller_admin, reseller_billing):
    settings.RESELLER_COMPANY = {"company_name": "Seeded Telecom", "tax_rate_percent": "20", "rounding": {"KZT": 0}}
    profile = reseller_profile()
    assert profile.company_name == "Seeded Telecom" and profile.tax_rate_percent == Decimal("20")
    assert profile.rounding == {"KZT": 0}
    updated = reseller_profile_update(
        actor=reseller_admin,
        values={"company_name": "Renamed Telecom", "tax_rate_percent": "7.5", "rounding": {"usd": 2}},
    )
    assert updated.company_name == "Renamed Telecom" and updated.rounding == {"USD": 2}
    with pytest.raises(PortalError) as bad:
        reseller_profile_update(actor=reseller_admin, values={"company_name": "X", "tax_rate_percent": "100"})
    assert bad.value.field == "tax_rate_percent"
    with pytest.raises(PortalError, match="may not"):
        reseller_profile_update(actor=reseller_billing, values={"company_name": "Nope"})


def test_payments_are_append_only_too(invoice, reseller_billing):
    from reselling.payments import payment_record

    payment_record(actor=reseller_billing, invoice=invoice, amount="10", method="bank", received_on="2026-01-20")
    with pytest.raises(DatabaseError, match="append-only"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("UPDATE reselling_payment SET amount = 1")
    assert Payment.objects.get().amount == Decimal("10")


def test_the_company_setting_must_be_a_json_object():
    from django.core.exceptions import ImproperlyConfigured

    from portal.env import Env

    assert Env({"RESELLER_COMPANY": '{"company_name": "Env Co"}'}).json("RESELLER_COMPANY", {}) == {
        "company_name": "Env Co"
    }
    assert Env({}).json("RESELLER_COMPANY", {"company_name": "Default"}) == {"company_name": "Default"}
    for bad in ("[1]", "{not json"):
        with pytest.raises(ImproperlyConfigured, match="RESELLER_COMPANY"):
            Env({"RESELLER_COMPANY": bad}).json("RESELLER_COMPANY", {})

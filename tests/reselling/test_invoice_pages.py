"""The invoice pages and API: staff see, download, credit and record payments; customers see
and download only their own invoices, without staff-only words; outsiders get 404."""

from __future__ import annotations

import io
import uuid

import pytest
from pypdf import PdfReader

from reselling.invoices import credit_note_create
from reselling.models import InvoiceRun, Payment
from reselling.payments import payment_record
from tests.factories import api_token, bearer
from tests.reselling.invoicing import PERIOD, charge, invoice_of, run

pytestmark = pytest.mark.django_db

INTERNAL = "Internal goodwill for the outage"


@pytest.fixture
def invoice(customer_tenant, customer_owner, reseller_billing):
    charge(customer_tenant, "60", description="Calls")
    run()
    issued = invoice_of(customer_tenant)
    credit_note_create(actor=reseller_billing, invoice=issued, amount="10", reason=INTERNAL)
    payment_record(
        actor=reseller_billing,
        invoice=issued,
        amount="5",
        method="bank",
        received_on="2026-01-20",
        reference="BANKREF-77",
    )
    return issued


def pdf_text(content: bytes) -> str:
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_staff_see_the_invoice_its_credit_note_payments_and_reasons(client, invoice, reseller_support):
    client.force_login(reseller_support)
    page = client.get(f"/console/reselling/invoices/{invoice.uuid}/").content.decode()
    note = invoice.credit_notes.get()
    assert invoice.number in page and note.number in page and INTERNAL in page and "BANKREF-77" in page
    assert "Partly paid" in page
    listing = client.get("/console/reselling/invoices/").content.decode()
    assert invoice.number in listing
    pdf = client.get(f"/console/reselling/invoices/{invoice.uuid}/download.pdf")
    assert pdf["Content-Type"] == "application/pdf" and invoice.number in pdf_text(pdf.content)
    csv = client.get(f"/console/reselling/invoices/{invoice.uuid}/download.csv")
    assert b"Calls" in csv.content
    assert client.get(f"/console/reselling/invoices/{invoice.uuid}/download.exe").status_code == 404


def test_staff_forms_record_a_payment_once_and_refuse_overpayment_on_the_page(client, invoice, reseller_billing):
    client.force_login(reseller_billing)
    url = f"/console/reselling/invoices/{invoice.uuid}/payments/"
    form = {"amount": "10", "method": "bank", "received_on": "2026-01-21", "client_key": "k1"}
    assert client.post(url, form).status_code == 302
    assert client.post(url, form).status_code == 302  # the same form again
    assert Payment.objects.filter(invoice=invoice).count() == 2  # the fixture's and this one
    refused = client.post(url, form | {"amount": "999", "client_key": "k2"})
    assert refused.status_code == 400 and "still due" in refused.content.decode()
    bad = client.post(f"/console/reselling/invoices/{invoice.uuid}/credit-notes/", {"amount": "1", "reason": ""})
    assert bad.status_code == 400 and "Enter the reason" in bad.content.decode()


def test_staff_run_now_for_a_past_month_shows_its_progress(client, reseller_billing, reseller_support, monkeypatch):
    monkeypatch.setattr("reselling.invoices._enqueue_run", lambda run_id: None)
    client.force_login(reseller_billing)
    response = client.post("/console/reselling/invoices/runs/start/", {"period": "2026-01"})
    run_row = InvoiceRun.objects.get(period=PERIOD)
    assert response.status_code == 302 and response["Location"].endswith(f"/runs/{run_row.pk}/")
    page = client.get(response["Location"]).content.decode()
    assert f"/console/jobs/{run_row.job.uuid}/" in page
    assert client.post("/console/reselling/invoices/runs/start/", {"period": "next"}).status_code == 400
    client.force_login(reseller_support)
    assert client.post("/console/reselling/invoices/runs/start/", {"period": "2026-01"}).status_code == 403


def test_admins_edit_the_company_details_others_cannot(client, reseller_admin, reseller_billing):
    client.force_login(reseller_billing)
    assert client.get("/console/reselling/invoices/company/").status_code == 403
    client.force_login(reseller_admin)
    form = {"company_name": "Edited Telecom", "tax_rate_percent": "10", "rounding": "USD=2, KZT=0"}
    assert client.post("/console/reselling/invoices/company/", form).status_code == 302
    assert "Edited Telecom" in client.get("/console/reselling/invoices/company/").content.decode()
    bad = client.post("/console/reselling/invoices/company/", form | {"rounding": "USD=two"})
    assert bad.status_code == 400 and "currency=decimals" in bad.content.decode()


def test_customers_see_and_download_their_invoices_without_staff_words(client, invoice, customer_owner):
    client.force_login(customer_owner)
    listing = client.get("/me/invoices/").content.decode()
    note = invoice.credit_notes.get()
    assert invoice.number in listing and note.number in listing
    page = client.get(f"/me/invoices/{invoice.uuid}/").content.decode()
    assert invoice.number in page and "Partly paid" in page
    for word in (INTERNAL, "BANKREF-77", "billing1"):
        assert word not in page
    pdf = client.get(f"/me/invoices/{invoice.uuid}/download.pdf")
    text = pdf_text(pdf.content)
    assert invoice.number in text and "60.00" in text and INTERNAL not in text


def test_another_tenant_customer_gets_404_like_a_missing_invoice(client, invoice, other_customer):
    client.force_login(other_customer)
    for suffix in ("", "download.pdf", "download.csv"):
        assert client.get(f"/me/invoices/{invoice.uuid}/{suffix}").status_code == 404
        assert client.get(f"/me/invoices/{uuid.uuid4()}/{suffix}").status_code == 404
    assert invoice.number not in client.get("/me/invoices/").content.decode()
    assert client.get(f"/console/reselling/invoices/{invoice.uuid}/").status_code == 403


def test_the_staff_api_lists_invoices_records_payments_and_credit_notes(client, invoice, reseller_billing):
    token = bearer(api_token(reseller_billing))
    listing = client.get("/api/v1/invoices", headers=token).json()
    assert {row["number"] for row in listing["results"]} >= {invoice.number}
    detail = client.get(f"/api/v1/invoices/{invoice.uuid}", headers=token).json()
    assert detail["status"] == "partly_paid" and detail["amount_due"].startswith("45")
    headers = token | {"Idempotency-Key": "pay-1"}
    body = {"amount": "5", "method": "cash", "received_on": "2026-01-22", "reference": "API"}
    made = client.post(
        f"/api/v1/invoices/{invoice.uuid}/payments", body, content_type="application/json", headers=headers
    )
    again = client.post(
        f"/api/v1/invoices/{invoice.uuid}/payments", body, content_type="application/json", headers=headers
    )
    assert made.status_code == again.status_code == 201 and made.json()["id"] == again.json()["id"]
    over = client.post(
        f"/api/v1/invoices/{invoice.uuid}/payments",
        body | {"amount": "1000"},
        content_type="application/json",
        headers=token | {"Idempotency-Key": "pay-2"},
    )
    assert over.status_code == 400 and "amount" in over.json()["error"]["fields"]
    payments = client.get(f"/api/v1/invoices/{invoice.uuid}/payments", headers=token).json()
    assert len(payments) == 2
    note = client.post(
        f"/api/v1/invoices/{invoice.uuid}/credit-notes",
        {"amount": "1", "reason": "API credit"},
        content_type="application/json",
        headers=token | {"Idempotency-Key": "cn-1"},
    )
    assert note.status_code == 201 and note.json()["kind"] == "credit_note"
    pdf = client.get(f"/api/v1/invoices/{invoice.uuid}/pdf", headers=token)
    assert pdf.status_code == 200 and invoice.number in pdf_text(pdf.content)


def test_the_customer_api_shows_own_invoices_and_pdfs_only(client, invoice, customer_owner, other_customer):
    token = bearer(api_token(customer_owner, tenant=invoice.tenant))
    rows = client.get("/api/v1/customer/invoices", headers=token).json()["results"]
    assert invoice.number in {r["number"] for r in rows}
    assert all("tenant" not in r and "reason" not in r for r in rows)
    pdf = client.get(f"/api/v1/customer/invoices/{invoice.uuid}/pdf", headers=token)
    assert pdf.status_code == 200 and invoice.number in pdf_text(pdf.content)
    other = bearer(api_token(other_customer, tenant=other_customer.membership.tenant))
    assert client.get(f"/api/v1/customer/invoices/{invoice.uuid}", headers=other).status_code == 404
    assert client.get(f"/api/v1/customer/invoices/{invoice.uuid}/pdf", headers=other).status_code == 404
    assert client.get("/api/v1/customer/invoices", headers=other).json()["results"] == []
    assert client.get(f"/api/v1/invoices/{invoice.uuid}", headers=token).status_code in (403, 404)

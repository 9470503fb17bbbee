"""An invoice or credit note as a PDF (ReportLab) and as CSV: what staff and the tenant's
customers download and what the issue email attaches. Both show only what is printed on the
invoice (its snapshots and lines), never staff notes."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

from django.utils.translation import gettext_noop

from portal.listing import csv_cell
from reselling.models import Invoice

# English in the PDF and file names; the issue email translates them (reselling.delivery).
TITLES: dict[str, str] = {
    Invoice.Kind.INVOICE: gettext_noop("Invoice"),
    Invoice.Kind.CREDIT_NOTE: gettext_noop("Credit note"),
}


def money(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):,f}"


def filename(invoice: Invoice, ext: str) -> str:
    return f"{TITLES[invoice.kind].lower().replace(' ', '-')}-{invoice.number}.{ext}"


def invoice_pdf(invoice: Invoice, *, places: int = 2) -> bytes:
    # ReportLab (and Pillow under it) load on the first PDF, not in every process that
    # imports the invoice views or the delivery task: a Celery worker syncing balances never
    # draws one and keeps the memory.
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, pageCompression=1)
    page.setTitle(f"{TITLES[invoice.kind]} {invoice.number}")
    width, height = A4
    left, right = 20 * mm, width - 20 * mm
    y = height - 25 * mm

    def line(text: str, *, size: int = 10, bold: bool = False, x: float = left, step: float = 5 * mm) -> None:
        nonlocal y
        if y < 25 * mm:
            page.showPage()
            y = height - 25 * mm
        page.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        page.drawString(x, y, text[:110])
        y -= step

    seller, buyer = invoice.seller or {}, invoice.buyer or {}
    line(f"{TITLES[invoice.kind]} {invoice.number}", size=16, bold=True, step=9 * mm)
    line(str(seller.get("company_name", "")), bold=True)
    for part in (seller.get("address", "") or "").splitlines():
        line(part)
    if seller.get("tax_id"):
        line(f"Tax id: {seller['tax_id']}")
    if seller.get("email"):
        line(str(seller["email"]))
    y -= 4 * mm
    line("Bill to", bold=True)
    line(str(buyer.get("company_name", "")))
    if buyer.get("contact_name"):
        line(str(buyer["contact_name"]))
    if buyer.get("email"):
        line(str(buyer["email"]))
    y -= 4 * mm
    line(f"Issued: {invoice.issued_at:%Y-%m-%d}    Period: {invoice.period:%B %Y}    Due: {invoice.due_on:%Y-%m-%d}")
    if invoice.corrects_id and invoice.corrects is not None:
        line(f"Corrects invoice {invoice.corrects.number}")
    y -= 4 * mm
    line("Description", bold=True)
    page.drawRightString(right - 35 * mm, y + 5 * mm, "Quantity")
    page.drawRightString(right, y + 5 * mm, f"Amount ({invoice.currency})")
    for item in invoice.lines.order_by("id"):
        line(item.description[:80])
        page.setFont("Helvetica", 10)
        page.drawRightString(right - 35 * mm, y + 5 * mm, f"{item.quantity.normalize():f}")
        page.drawRightString(right, y + 5 * mm, money(item.amount, places))
    y -= 3 * mm
    for label, value in (
        ("Subtotal", invoice.subtotal),
        (f"Tax {invoice.tax_rate_percent.normalize():f} %", invoice.tax),
        (f"Total {invoice.currency}", invoice.total),
    ):
        line(label, bold=label.startswith("Total"), x=right - 80 * mm)
        page.drawRightString(right, y + 5 * mm, money(value, places))
    if seller.get("bank_details") and invoice.kind == Invoice.Kind.INVOICE:
        y -= 6 * mm
        line("Payment details", bold=True)
        for part in str(seller["bank_details"]).splitlines():
            line(part)
        line(f"Please quote {invoice.number} with your payment.")
    page.showPage()
    page.save()
    return buffer.getvalue()


def invoice_csv(invoice: Invoice, *, places: int = 2) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["number", "kind", "issued", "period", "due", "description", "quantity", "amount", "currency"])
    head = [
        invoice.number,
        invoice.kind,
        f"{invoice.issued_at:%Y-%m-%d}",
        f"{invoice.period:%Y-%m}",
        str(invoice.due_on),
    ]
    for item in invoice.lines.order_by("id"):
        writer.writerow(
            [
                *head,
                csv_cell(item.description),
                f"{item.quantity.normalize():f}",
                money(item.amount, places),
                invoice.currency,
            ]
        )
    for label, value in (("Subtotal", invoice.subtotal), ("Tax", invoice.tax), ("Total", invoice.total)):
        writer.writerow([*head, label, "", money(value, places), invoice.currency])
    return out.getvalue()

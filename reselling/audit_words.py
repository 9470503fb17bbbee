"""How the reselling app's audit actions read, and the plans and invoices an event names
(portal/audit_sentences.py finds this module by its name)."""

from __future__ import annotations

from collections.abc import Mapping

from django.urls import reverse

from portal import inputs
from portal.audit_sentences import Ref, register, register_reference
from reselling.models import Invoice, PricePlan


def _plans(keys: set[str]) -> Mapping[str, Ref]:
    ids = {int(k) for k in keys if inputs.is_ascii_digits(k)}
    found: dict[str, Ref] = {
        str(p.pk): (f"plan {p.name}", reverse("reselling:plan_edit", args=[p.pk]))
        for p in PricePlan.objects.filter(pk__in=ids).only("pk", "name")
    }
    return {k: found.get(k, ("a removed plan", None)) for k in keys}


def _invoices(keys: set[str]) -> Mapping[str, Ref]:
    found: dict[str, Ref] = {
        i.number: (f"invoice {i.number}", reverse("reselling:invoice", args=[i.uuid]))
        for i in Invoice.objects.filter(number__in=keys).only("pk", "uuid", "number")
    }
    return {k: found.get(k, (f"invoice {k}", None)) for k in keys}


register_reference("plan", "before_plan", resolver=_plans)
register_reference("invoice", resolver=_invoices)

register(
    {
        "reselling.plan.created": "{actor} created {plan}",
        "reselling.plan.changed": "{actor} changed {plan}",
        "reselling.plan.archived": "{actor} archived {plan}",
        "reselling.plan.assigned": "{actor} put {tenant} on {plan}[ from {effective_from}]",
        "reselling.default_plan.set": "{actor} changed the default plan of {connection}",
        "reselling.topup.for_payment": "{actor} topped up {tenant} for a payment of {paid}: {credited} credited ({transfer})",
        "reselling.profile.updated": "{actor} updated the invoicing profile[: {changed}]",
        "reselling.invoice_run.started": "{actor} started the invoice run for {period}",
        "reselling.invoice_run.resumed": "{actor} resumed the invoice run for {period}",
        "reselling.invoice_run.finished": "The invoice run for {period} finished[: {invoices} invoices]",
        "reselling.invoice.emailed": "{invoice} was emailed[ to {recipients} recipients]",
        "reselling.credit_note.created": "{actor} credited {amount} on {invoice}[ ({credit_note})][: {reason}]",
        "reselling.payment.recorded": "{actor} recorded a payment of {amount} on {invoice}[ by {method}]",
        "reselling.dunning.reminded": "{tenant} was reminded about {invoice}[ (step {step})]",
        "reselling.dunning.froze": "{actor} froze {tenant}: unpaid {invoice}[, due {due_on}]",
        "reselling.dunning.unfrozen": "{actor} unfroze {tenant}: {invoice} is paid",
    }
)

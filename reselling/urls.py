from django.urls import path

from reselling import views_invoices, views_plans

app_name = "reselling"

urlpatterns = [
    path("plans/", views_plans.plan_list, name="plans"),
    path("plans/new/", views_plans.plan_create, name="plan_create"),
    path("plans/<int:plan_id>/", views_plans.plan_edit, name="plan_edit"),
    path("plans/<int:plan_id>/archive/", views_plans.plan_archive, name="plan_archive"),
    path("connections/<int:connection_id>/default-plan/", views_plans.connection_default, name="connection_default"),
    path("tenants/<uuid:tenant_uuid>/plan/", views_plans.tenant_assign, name="tenant_assign"),
    path("tenants/<uuid:tenant_uuid>/topup/", views_plans.tenant_topup, name="tenant_topup"),
    path("margin/", views_plans.margin_report, name="margin"),
    path("charges/", views_plans.charge_list, name="charges"),
    # Invoices, credit notes, payments and the monthly run (reselling/views_invoices.py).
    path("invoices/", views_invoices.invoice_list, name="invoices"),
    path("invoices/runs/", views_invoices.invoice_runs, name="invoice_runs"),
    path("invoices/runs/start/", views_invoices.invoice_run_now, name="invoice_run_now"),
    path("invoices/runs/<int:run_id>/", views_invoices.invoice_run, name="invoice_run"),
    path("invoices/company/", views_invoices.invoice_profile, name="invoice_profile"),
    path("invoices/<uuid:invoice_uuid>/", views_invoices.invoice_detail, name="invoice"),
    path("invoices/<uuid:invoice_uuid>/download.<str:fmt>", views_invoices.invoice_download, name="invoice_download"),
    path("invoices/<uuid:invoice_uuid>/credit-notes/", views_invoices.credit_note_create, name="credit_note_create"),
    path("invoices/<uuid:invoice_uuid>/payments/", views_invoices.payment_create, name="payment_create"),
]

from django.apps import AppConfig


class ResellingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reselling"
    verbose_name = "Reselling: plans, charges, invoices, payments"

from typing import Any

from django.apps import AppConfig
from django.core import checks


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        checks.register(check_settings, "billing")
        # The staged tenant close pulls the balance back through billing (tenants/services/balance.py).
        from billing.closing import BillingBalanceReturn  # models are loaded only once apps are ready
        from tenants.services import provide_balance_return

        provide_balance_return(BillingBalanceReturn())
        # The tenant edit changes the threshold through its one owner here (billing.alerts).
        from billing.alerts import tenant_set_low_balance_threshold
        from tenants.services import provide_threshold_owner

        provide_threshold_owner(tenant_set_low_balance_threshold)


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Bad billing settings fail loudly at start (manage.py check, runserver, the worker)."""
    from billing.conf import validate_all

    return [checks.Error(problem, id=f"billing.E{index:03d}") for index, problem in enumerate(validate_all(), 1)]

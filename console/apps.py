from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "console"
    verbose_name = "Console home and the demo set-up"

    def ready(self) -> None:
        # Here, not at the top: console.metrics reads billing's and tenants' models, which
        # exist only once Django has loaded the apps.
        from console.metrics import BusinessCollector
        from portal.metrics import register_collector

        register_collector("console.business", BusinessCollector())

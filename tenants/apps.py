from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_sqlite_search(using: str = "default", **kwargs: Any) -> None:
    """Django rebuilds a SQLite table (and drops its triggers) when a later migration alters it;
    put the FTS triggers back, and re-index, whenever they are missing."""
    from django.db import connections

    from tenants.migrations import _search_sql

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'tenants_tenant_fts_%'")
        if cursor.fetchone()[0] == 3:
            return
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'tenants_tenant'")
        if cursor.fetchone() is None:
            return
        for sql in _search_sql.SQLITE_FORWARD:
            cursor.execute(sql)


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        post_migrate.connect(_ensure_sqlite_search, sender=self)

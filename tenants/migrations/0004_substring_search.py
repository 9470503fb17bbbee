"""Substring ("anywhere") search indexes, per database:

- PostgreSQL: pg_trgm GIN index over lower(company || ' ' || account name || ' ' || email),
  which serves LIKE '%q%' (tenants.selectors._substring_ids uses the same expression).
- SQLite: an external-content FTS5 table with the trigram tokenizer, kept in step by triggers
  that fire only when a searched column changes (billing's balance updates do not touch it).

Other databases get nothing and fall back to icontains.
"""

from django.db import migrations

from tenants.migrations._search_sql import PG_BACKWARD, PG_FORWARD, SQLITE_BACKWARD, SQLITE_FORWARD, run_trigram_sql


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)

    return run


def _forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        run_trigram_sql(schema_editor, PG_FORWARD)
        return
    _run({"sqlite": SQLITE_FORWARD})(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0003_operations_and_search")]

    operations = [
        migrations.RunPython(
            _forward,
            _run({"postgresql": PG_BACKWARD, "sqlite": SQLITE_BACKWARD}),
        ),
    ]

"""Fewer indexes to write when the balance sync rewrites the tenants.

- The connection foreign key loses its own index: tenant_conn_status_idx (connection, status,
  id) and the unique constraints lead with the connection already.
- PostgreSQL: the substring search's text moves from an expression index on the tenants to
  ``tenants_tenant_search`` (one row a tenant, a pg_trgm GIN index, kept in step by triggers
  on the tenants table; see tenants/migrations/_search_sql.py). The balance sync rewrites
  every tenant row on a first sync, and each rewrite added some 60 trigrams to the GIN index;
  now it touches only the tenants' btree indexes. SQLite keeps its FTS5 table (already apart).
"""

import django.db.models.deletion
from django.db import migrations, models

from tenants.migrations._search_sql import (
    PG_FORWARD,
    PG_SEARCH_INDEX,
    PG_SEARCH_TABLE,
    PG_SEARCH_TABLE_BACKWARD,
    run_trigram_sql,
)


def _forward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in PG_SEARCH_TABLE:
        schema_editor.execute(sql, params=None)
    run_trigram_sql(schema_editor, PG_SEARCH_INDEX)


def _backward(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in PG_SEARCH_TABLE_BACKWARD:
        schema_editor.execute(sql, params=None)
    run_trigram_sql(schema_editor, PG_FORWARD)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0008_membership_language")]

    operations = [
        migrations.AlterField(
            model_name="tenant",
            name="connection",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="tenants",
                to="tenants.providerconnection",
            ),
        ),
        migrations.RunPython(_forward, _backward),
    ]

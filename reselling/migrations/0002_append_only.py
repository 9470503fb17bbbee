"""Charges, issued invoices, their lines and payments are append-only, enforced by the database
so raw SQL is held to it too. DELETE stays possible on SQLite only while portal_audit_unlock
has a row (the test flush, see portal 0002); PostgreSQL tests empty tables with TRUNCATE.
"""

from django.db import migrations

TABLES = ("reselling_charge", "reselling_invoice", "reselling_invoiceline", "reselling_payment")


def _sqlite(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            WHEN NOT EXISTS (SELECT 1 FROM portal_audit_unlock)
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;""",
    ]


POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION reselling_append_only() RETURNS trigger AS $$
    BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql;"""


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        for table in TABLES:
            for sql in _sqlite(table):
                schema_editor.execute(sql, params=None)
    elif vendor == "postgresql":
        schema_editor.execute(POSTGRES_FUNCTION, params=None)
        for table in TABLES:
            schema_editor.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION reselling_append_only();",
                params=None,
            )


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for table in TABLES:
        if vendor == "sqlite":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update;")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete;")
        elif vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};")
    if vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS reselling_append_only();")


class Migration(migrations.Migration):
    dependencies = [("reselling", "0001_initial"), ("portal", "0002_roles_and_append_only_audit")]

    operations = [migrations.RunPython(install, remove)]

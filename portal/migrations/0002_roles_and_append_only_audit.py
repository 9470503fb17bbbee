from django.db import migrations

ROLES = ["reseller_admin", "reseller_billing", "reseller_support", "customer_owner", "customer_viewer"]

SQLITE_TRIGGERS = [
    """CREATE TRIGGER portal_auditevent_no_update BEFORE UPDATE ON portal_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
    # SQLite has no TRUNCATE, so the test framework empties tables with DELETE; a row in
    # portal_audit_unlock (a table outside the ORM that production never writes) lets the
    # tests' flush through. See tests/conftest.py.
    "CREATE TABLE portal_audit_unlock (reason TEXT NOT NULL);",
    """CREATE TRIGGER portal_auditevent_no_delete BEFORE DELETE ON portal_auditevent
       WHEN NOT EXISTS (SELECT 1 FROM portal_audit_unlock)
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;""",
]
SQLITE_DROP = [
    "DROP TRIGGER portal_auditevent_no_update;",
    "DROP TRIGGER portal_auditevent_no_delete;",
    "DROP TABLE portal_audit_unlock;",
]

POSTGRES_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION portal_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit events are append-only'; END; $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER portal_auditevent_append_only BEFORE UPDATE OR DELETE ON portal_auditevent
       FOR EACH ROW EXECUTE FUNCTION portal_append_only();""",
    # TRUNCATE is how the test framework empties tables between transactional tests; it is
    # not a row change and stays allowed for the table owner.
]
POSTGRES_DROP = [
    "DROP TRIGGER portal_auditevent_append_only ON portal_auditevent;",
    "DROP FUNCTION portal_append_only();",
]


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"sqlite": SQLITE_TRIGGERS, "postgresql": POSTGRES_TRIGGERS}.get(vendor, [])
    for sql in statements:
        schema_editor.execute(sql)


def remove_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}.get(vendor, []):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [
        migrations.RunPython(create_roles, migrations.RunPython.noop),
        migrations.RunPython(install_triggers, remove_triggers),
    ]

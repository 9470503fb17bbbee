"""The journal is append-only and every entry balances, enforced by the database itself so
that non-ORM writes are held to it too (django-hordak's "Database Triggers" idea).

Lines are inserted first and their entry last (billing.ledger). On SQLite the check runs when
the entry row arrives; on PostgreSQL a deferred constraint trigger checks at commit.
DELETE stays possible on SQLite only while portal_audit_unlock has a row (the test flush, see
portal 0002 and tests/conftest.py); PostgreSQL tests empty tables with TRUNCATE.
"""

from django.db import migrations

SQLITE = [
    """CREATE TRIGGER billing_journalentry_no_update BEFORE UPDATE ON billing_journalentry
       BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;""",
    """CREATE TRIGGER billing_journalentry_no_delete BEFORE DELETE ON billing_journalentry
       WHEN NOT EXISTS (SELECT 1 FROM portal_audit_unlock)
       BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;""",
    """CREATE TRIGGER billing_journalline_no_update BEFORE UPDATE ON billing_journalline
       BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;""",
    """CREATE TRIGGER billing_journalline_no_delete BEFORE DELETE ON billing_journalline
       WHEN NOT EXISTS (SELECT 1 FROM portal_audit_unlock)
       BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;""",
    # A posted entry takes no more lines.
    """CREATE TRIGGER billing_journalline_posted BEFORE INSERT ON billing_journalline
       WHEN EXISTS (SELECT 1 FROM billing_journalentry WHERE id = NEW.entry_id)
       BEGIN SELECT RAISE(ABORT, 'journal entry already posted'); END;""",
    # SQLite keeps these decimals as REAL; rounding to the column's 4 places makes the sum exact.
    """CREATE TRIGGER billing_journalentry_balanced AFTER INSERT ON billing_journalentry
       WHEN (SELECT ROUND(COALESCE(SUM(amount), 0), 4) FROM billing_journalline WHERE entry_id = NEW.id) != 0
         OR (SELECT COUNT(*) FROM billing_journalline WHERE entry_id = NEW.id) != NEW.line_count
         OR (SELECT COUNT(*) FROM billing_journalline WHERE entry_id = NEW.id AND currency != NEW.currency) != 0
       BEGIN SELECT RAISE(ABORT, 'journal entry does not balance'); END;""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS billing_journalentry_no_update;",
    "DROP TRIGGER IF EXISTS billing_journalentry_no_delete;",
    "DROP TRIGGER IF EXISTS billing_journalline_no_update;",
    "DROP TRIGGER IF EXISTS billing_journalline_no_delete;",
    "DROP TRIGGER IF EXISTS billing_journalline_posted;",
    "DROP TRIGGER IF EXISTS billing_journalentry_balanced;",
]

POSTGRES = [
    """CREATE OR REPLACE FUNCTION billing_journal_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'the journal is append-only'; END; $$ LANGUAGE plpgsql;""",
    """CREATE TRIGGER billing_journalentry_append_only BEFORE UPDATE OR DELETE ON billing_journalentry
       FOR EACH ROW EXECUTE FUNCTION billing_journal_append_only();""",
    """CREATE TRIGGER billing_journalline_append_only BEFORE UPDATE OR DELETE ON billing_journalline
       FOR EACH ROW EXECUTE FUNCTION billing_journal_append_only();""",
    """CREATE OR REPLACE FUNCTION billing_journal_check_entry() RETURNS trigger AS $$
       DECLARE
         entry uuid;
         total numeric;
         lines integer;
         other_currency integer;
         expected integer;
         entry_currency varchar;
       BEGIN
         IF TG_TABLE_NAME = 'billing_journalline' THEN entry := NEW.entry_id; ELSE entry := NEW.id; END IF;
         SELECT line_count, currency INTO expected, entry_currency FROM billing_journalentry WHERE id = entry;
         SELECT COALESCE(SUM(amount), 0), COUNT(*), COUNT(*) FILTER (WHERE currency <> entry_currency)
           INTO total, lines, other_currency FROM billing_journalline WHERE entry_id = entry;
         IF expected IS NULL OR total <> 0 OR lines <> expected OR other_currency <> 0 THEN
           RAISE EXCEPTION 'journal entry % does not balance (sum %, % lines, % expected)', entry, total, lines, expected;
         END IF;
         RETURN NULL;
       END; $$ LANGUAGE plpgsql;""",
    """CREATE CONSTRAINT TRIGGER billing_journalline_balanced AFTER INSERT ON billing_journalline
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_journal_check_entry();""",
    """CREATE CONSTRAINT TRIGGER billing_journalentry_balanced AFTER INSERT ON billing_journalentry
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_journal_check_entry();""",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS billing_journalentry_balanced ON billing_journalentry;",
    "DROP TRIGGER IF EXISTS billing_journalline_balanced ON billing_journalline;",
    "DROP FUNCTION IF EXISTS billing_journal_check_entry();",
    "DROP TRIGGER IF EXISTS billing_journalline_append_only ON billing_journalline;",
    "DROP TRIGGER IF EXISTS billing_journalentry_append_only ON billing_journalentry;",
    "DROP FUNCTION IF EXISTS billing_journal_append_only();",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE, "postgresql": POSTGRES}.get(vendor, []):
        # No parameters: the PL/pgSQL RAISE format uses bare % signs.
        schema_editor.execute(sql, params=None)


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    for sql in {"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}.get(vendor, []):
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial"), ("portal", "0002_roles_and_append_only_audit")]

    operations = [migrations.RunPython(install, remove)]

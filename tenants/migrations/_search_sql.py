"""SQL for the substring-search objects (migrations 0004 and 0009, and the post_migrate repair in tenants.apps)."""

from typing import Any


def run_trigram_sql(schema_editor: Any, statements: list[str]) -> None:
    """Statements that need pg_trgm, in a savepoint: CREATE EXTENSION needs a privileged role,
    and without it substring search still works (a sequential LIKE), just slower, so the
    migration must not fail."""
    from django.db import DatabaseError, transaction

    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            for sql in statements:
                schema_editor.execute(sql, params=None)
    except DatabaseError as exc:
        print(f"\n  tenants: pg_trgm is not available ({exc}); substring search will not be indexed.")


PG_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS tenant_search_trgm ON tenants_tenant USING gin "
    "(lower(company_name || ' ' || account_name || ' ' || account_email) gin_trgm_ops)",
]
PG_BACKWARD = ["DROP INDEX IF EXISTS tenant_search_trgm"]

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS tenants_tenant_fts USING fts5("
    "company_name, account_name, account_email, content='tenants_tenant', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS tenants_tenant_fts_ai AFTER INSERT ON tenants_tenant BEGIN "
    "INSERT INTO tenants_tenant_fts(rowid, company_name, account_name, account_email) "
    "VALUES (new.id, new.company_name, new.account_name, new.account_email); END",
    "CREATE TRIGGER IF NOT EXISTS tenants_tenant_fts_ad AFTER DELETE ON tenants_tenant BEGIN "
    "INSERT INTO tenants_tenant_fts(tenants_tenant_fts, rowid, company_name, account_name, account_email) "
    "VALUES ('delete', old.id, old.company_name, old.account_name, old.account_email); END",
    "CREATE TRIGGER IF NOT EXISTS tenants_tenant_fts_au AFTER UPDATE OF company_name, account_name, account_email "
    "ON tenants_tenant BEGIN "
    "INSERT INTO tenants_tenant_fts(tenants_tenant_fts, rowid, company_name, account_name, account_email) "
    "VALUES ('delete', old.id, old.company_name, old.account_name, old.account_email); "
    "INSERT INTO tenants_tenant_fts(rowid, company_name, account_name, account_email) "
    "VALUES (new.id, new.company_name, new.account_name, new.account_email); END",
    "INSERT INTO tenants_tenant_fts(tenants_tenant_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS tenants_tenant_fts_ai",
    "DROP TRIGGER IF EXISTS tenants_tenant_fts_ad",
    "DROP TRIGGER IF EXISTS tenants_tenant_fts_au",
    "DROP TABLE IF EXISTS tenants_tenant_fts",
]

# Migration 0009: on PostgreSQL the searched text lives in a narrow table of its own, one row a
# tenant, kept in step by triggers. The tenants table keeps no trigram index: the balance sync's
# updates of every row (new index entries in every index of the table, as balance is indexed)
# no longer write some 60 trigrams a row into a GIN index and its pending list.
PG_SEARCH_TABLE = [
    "CREATE TABLE IF NOT EXISTS tenants_tenant_search (tenant_id bigint PRIMARY KEY, document text NOT NULL)",
    # New tenants, one statement at a time (a COPY of many rows is one trigger call).
    "CREATE OR REPLACE FUNCTION tenants_tenant_search_added() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO tenants_tenant_search (tenant_id, document) "
    "SELECT n.id, lower(n.company_name || ' ' || n.account_name || ' ' || n.account_email) FROM added n "
    "ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER tenants_tenant_search_ai AFTER INSERT ON tenants_tenant "
    "REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION tenants_tenant_search_added()",
    # A searched column changed: only updates that set one of them are even looked at.
    "CREATE OR REPLACE FUNCTION tenants_tenant_search_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO tenants_tenant_search (tenant_id, document) "
    "VALUES (NEW.id, lower(NEW.company_name || ' ' || NEW.account_name || ' ' || NEW.account_email)) "
    "ON CONFLICT (tenant_id) DO UPDATE SET document = excluded.document; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER tenants_tenant_search_au AFTER UPDATE OF company_name, account_name, account_email "
    "ON tenants_tenant FOR EACH ROW WHEN (OLD.company_name IS DISTINCT FROM NEW.company_name "
    "OR OLD.account_name IS DISTINCT FROM NEW.account_name OR OLD.account_email IS DISTINCT FROM NEW.account_email) "
    "EXECUTE FUNCTION tenants_tenant_search_changed()",
    "CREATE OR REPLACE FUNCTION tenants_tenant_search_removed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "DELETE FROM tenants_tenant_search s USING removed r WHERE s.tenant_id = r.id; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER tenants_tenant_search_ad AFTER DELETE ON tenants_tenant "
    "REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION tenants_tenant_search_removed()",
    # TRUNCATE fires no delete trigger (a test database's flush truncates every table).
    "CREATE OR REPLACE FUNCTION tenants_tenant_search_emptied() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "TRUNCATE tenants_tenant_search; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER tenants_tenant_search_at AFTER TRUNCATE ON tenants_tenant "
    "FOR EACH STATEMENT EXECUTE FUNCTION tenants_tenant_search_emptied()",
    "INSERT INTO tenants_tenant_search (tenant_id, document) "
    "SELECT id, lower(company_name || ' ' || account_name || ' ' || account_email) FROM tenants_tenant "
    "ON CONFLICT (tenant_id) DO NOTHING",
    "DROP INDEX IF EXISTS tenant_search_trgm",
]
# Needs pg_trgm (created by 0004 where the role may): without it a substring search reads the
# narrow table through, still not the tenants.
PG_SEARCH_INDEX = [
    "CREATE INDEX IF NOT EXISTS tenant_search_document_trgm ON tenants_tenant_search USING gin (document gin_trgm_ops)",
]
PG_SEARCH_TABLE_BACKWARD = [
    "DROP TRIGGER IF EXISTS tenants_tenant_search_ai ON tenants_tenant",
    "DROP TRIGGER IF EXISTS tenants_tenant_search_au ON tenants_tenant",
    "DROP TRIGGER IF EXISTS tenants_tenant_search_ad ON tenants_tenant",
    "DROP TRIGGER IF EXISTS tenants_tenant_search_at ON tenants_tenant",
    "DROP FUNCTION IF EXISTS tenants_tenant_search_added()",
    "DROP FUNCTION IF EXISTS tenants_tenant_search_changed()",
    "DROP FUNCTION IF EXISTS tenants_tenant_search_removed()",
    "DROP FUNCTION IF EXISTS tenants_tenant_search_emptied()",
    "DROP TABLE IF EXISTS tenants_tenant_search",
]

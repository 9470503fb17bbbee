"""SQL for the substring-search objects (migration 0004 and the post_migrate repair in tenants.apps)."""

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

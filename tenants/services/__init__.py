"""Every write to tenants, one topic a module:

- ``validation``: the input rules of the tenant forms, the API and the services;
- ``operations``: the operation engine (start, claim, settle, retry, give up, sweep);
- ``lifecycle``: create, clone, freeze, unfreeze, close and import, as staff start them;
- ``runners``: what a worker does for each kind of operation, and the dispatch;
- ``close``: the staged close; ``balance``: what the close needs from billing;
- ``bulk``: bulk actions; ``scan``: provider accounts the portal does not know;
- ``secret_store``: provider secrets kept with a tenant;
- ``edit``: the staff edit, enabling at the provider, the threshold push, credential rotation;
- ``plans``: the account's provider plans (read, upgrade) and its document verification.

Callers import from ``tenants.services``; the names below are the public ones.
"""

from tenants.services.balance import BalanceReturn, provide_balance_return
from tenants.services.bulk import BULK_ACTIONS, bulk_preview, bulk_run, bulk_start
from tenants.services.edit import (
    DISABLED_AT_PROVIDER,
    activate_refusal,
    editable_provider_fields,
    may_set_threshold,
    provide_threshold_owner,
    rotate_refusal,
    rotation_reveal,
    tenant_activate,
    tenant_edit,
    tenant_push_threshold,
    tenant_rotate,
    threshold_local_reason,
)
from tenants.services.lifecycle import (
    freeze_refusal,
    send_owner_invitation,
    tenant_clone,
    tenant_close,
    tenant_create,
    tenant_freeze,
    tenant_freeze_by_rule,
    tenant_import,
    tenant_unfreeze,
)
from tenants.services.operations import (
    BULK_LIMIT,
    MAX_FAILURES,
    operation_give_up,
    operation_retry,
    operations_sweep,
)
from tenants.services.plans import (
    FEE_RESERVED_NOTICE,
    available_plans,
    change_plan_refusal,
    may_change_plan,
    plans_refresh,
    plans_refusal,
    tenant_change_plan,
    verification_refresh,
    verification_refusal,
    verification_scan,
)
from tenants.services.runners import operation_run
from tenants.services.scan import (
    LISTING_REFUSED,
    LOOKUP_FIELDS,
    listing_refused,
    unknown_account_lookup,
    unknown_accounts_scan,
    unknown_accounts_scan_run,
)
from tenants.services.secret_store import tenant_secrets, tenant_secrets_rotate
from tenants.services.validation import (
    ACCOUNT_NAME_RE,
    AccountInput,
    generate_password,
    validate_account_input,
    validate_account_name,
)

__all__ = [
    "FEE_RESERVED_NOTICE",
    "available_plans",
    "change_plan_refusal",
    "may_change_plan",
    "plans_refresh",
    "plans_refusal",
    "tenant_change_plan",
    "verification_refresh",
    "verification_refusal",
    "verification_scan",
    "DISABLED_AT_PROVIDER",
    "activate_refusal",
    "editable_provider_fields",
    "provide_threshold_owner",
    "rotate_refusal",
    "rotation_reveal",
    "tenant_activate",
    "tenant_edit",
    "may_set_threshold",
    "tenant_push_threshold",
    "tenant_rotate",
    "threshold_local_reason",
    "ACCOUNT_NAME_RE",
    "BULK_ACTIONS",
    "LISTING_REFUSED",
    "LOOKUP_FIELDS",
    "BULK_LIMIT",
    "MAX_FAILURES",
    "AccountInput",
    "BalanceReturn",
    "bulk_preview",
    "bulk_run",
    "bulk_start",
    "freeze_refusal",
    "generate_password",
    "listing_refused",
    "operation_give_up",
    "operation_retry",
    "operation_run",
    "operations_sweep",
    "provide_balance_return",
    "send_owner_invitation",
    "tenant_clone",
    "tenant_close",
    "tenant_create",
    "tenant_freeze",
    "tenant_freeze_by_rule",
    "tenant_import",
    "tenant_secrets",
    "tenant_secrets_rotate",
    "tenant_unfreeze",
    "unknown_account_lookup",
    "unknown_accounts_scan",
    "unknown_accounts_scan_run",
    "validate_account_input",
    "validate_account_name",
]

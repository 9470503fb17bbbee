"""Every billing write, keyword-only. The implementations live in the modules named below;
this is the one import other apps use (billing.services.transfer_create, ...)."""

from billing.alerts import low_balance_alerts_send, tenant_set_low_balance_threshold
from billing.bulk import bulk_transfer_plan, bulk_transfer_run, bulk_transfer_start
from billing.reconcile import drift_resolve, reconcile_execute, reconcile_start
from billing.sync import sync_execute, sync_start, tenant_refresh
from billing.transfers import (
    budget_refresh,
    request_fingerprint,
    transfer_approve,
    transfer_create,
    transfer_execute,
    transfer_reconcile,
    transfer_reject,
    transfer_resolve,
    transfer_sweep,
    transfer_withdraw_balance,
    user_transfer_create,
    user_transfer_refusal,
)

__all__ = [
    "budget_refresh",
    "bulk_transfer_plan",
    "bulk_transfer_run",
    "bulk_transfer_start",
    "drift_resolve",
    "low_balance_alerts_send",
    "reconcile_execute",
    "reconcile_start",
    "request_fingerprint",
    "sync_execute",
    "sync_start",
    "tenant_refresh",
    "tenant_set_low_balance_threshold",
    "transfer_approve",
    "transfer_create",
    "transfer_execute",
    "transfer_reconcile",
    "transfer_reject",
    "transfer_resolve",
    "transfer_sweep",
    "transfer_withdraw_balance",
    "user_transfer_create",
    "user_transfer_refusal",
]

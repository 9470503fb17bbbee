"""Billing data: transfers (a durable state machine), the append-only double-entry journal,
the reseller's budget, balance snapshots, sync runs, drift found by reconciliation and
low-balance alerts. Tenant's own provider-data columns live in tenants.models.Tenant and are
written in bulk by billing.sync.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Transfer(models.Model):
    """One money movement between the reseller's parent account and one tenant.

    The row (with its payment_reference) is committed before the provider is called; each
    later step is a conditional UPDATE fenced by ``attempt``, made by
    billing.transitions.transition (states and moves: docs/money.md).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown (resolving)"
        RESEND = "resend", "Resend"
        NEEDS_REVIEW = "needs_review", "Needs review"

    class Direction(models.TextChoices):
        TO_TENANT = "to_tenant", "Top-up (parent → tenant)"
        TO_PARENT = "to_parent", "Pull back (tenant → parent)"
        # Inside one tenant's account: the company balance and one PBX user's own balance.
        TO_USER = "to_user", "To a PBX user (account → user)"
        FROM_USER = "from_user", "From a PBX user (user → account)"

    USER_DIRECTIONS = frozenset({Direction.TO_USER, Direction.FROM_USER})

    class Origin(models.TextChoices):
        STAFF = "staff", "Staff"
        BULK = "bulk", "Bulk"
        API = "api", "API"
        SYSTEM = "system", "System"

    TERMINAL = frozenset({State.SUCCEEDED, State.FAILED})
    OPEN = frozenset({State.PENDING, State.SENDING, State.UNKNOWN, State.RESEND, State.NEEDS_REVIEW})
    UNRESOLVED = frozenset({State.UNKNOWN, State.RESEND, State.NEEDS_REVIEW})

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="transfers")
    connection = models.ForeignKey("tenants.ProviderConnection", on_delete=models.PROTECT, related_name="+")
    # Snapshotted at creation: the transfer goes to this account even if the tenant changes.
    child_account_id = models.BigIntegerField()
    # A transfer between the account and one of its PBX users (directions to_user, from_user):
    # the user, and its provider id snapshotted at creation.
    pbx_user = models.ForeignKey(
        "tenants.PbxUser", null=True, blank=True, on_delete=models.PROTECT, related_name="transfers"
    )
    provider_user_id = models.BigIntegerField(null=True, blank=True)
    direction = models.CharField(max_length=10, choices=Direction.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3)
    # Staff's own words (internal); customers see customer_description, or a neutral label.
    reason = models.CharField(max_length=500)
    customer_description = models.CharField(max_length=200, blank=True)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.STAFF)

    payment_reference = models.CharField(max_length=126, unique=True)
    # Fixed at creation (created_at − 48 h, UTC) and sent unchanged on every attempt, so the
    # provider's duplicate check covers the first attempt whatever timezone it assumes.
    dup_check_from = models.DateTimeField()
    client_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    request_hash = models.CharField(max_length=64, blank=True)

    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    attempt = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    ambiguous_attempts = models.PositiveIntegerField(default=0)
    empty_lookups = models.PositiveIntegerField(default=0)
    first_unknown_at = models.DateTimeField(null=True, blank=True)
    # The provider refused an attempt made after an unanswered one: two empty lookups then
    # prove nothing moved, and the transfer fails instead of being resent.
    refused_after_unknown = models.BooleanField(default=False)

    requires_approval = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    provider_txn_id = models.CharField(max_length=64, blank=True)
    balance_after = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    review_reason = models.CharField(max_length=1000, blank=True)
    evidence = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(
                condition=Q(
                    state__in=["pending", "sending", "succeeded", "failed", "unknown", "resend", "needs_review"]
                ),
                name="transfer_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(direction__in=["to_tenant", "to_parent", "to_user", "from_user"]),
                name="transfer_direction_valid",
            ),
            models.CheckConstraint(
                condition=(
                    Q(direction__in=["to_user", "from_user"], pbx_user__isnull=False, provider_user_id__isnull=False)
                    | Q(direction__in=["to_tenant", "to_parent"], pbx_user__isnull=True)
                ),
                name="transfer_user_matches_direction",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="transfer_state_due_idx"),
            models.Index(fields=["tenant", "-id"], name="transfer_tenant_idx"),
            models.Index(fields=["created_by", "created_at"], name="transfer_staff_day_idx"),
            models.Index(fields=["connection", "state", "completed_at"], name="transfer_conn_done_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.payment_reference} {self.direction} {self.amount} {self.currency} ({self.state})"

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL

    @property
    def awaiting_approval(self) -> bool:
        return self.requires_approval and self.approved_at is None and self.state == self.State.PENDING

    @property
    def is_live(self) -> bool:
        """Moving on its own (a worker sends or looks it up): pages keep its row fresh. Not when it
        waits for a human (approval, review) or is done."""
        if self.state == self.State.PENDING:
            return not self.awaiting_approval
        return self.state in (self.State.SENDING, self.State.RESEND, self.State.UNKNOWN)

    @property
    def signed_amount(self):  # type: ignore[no-untyped-def]
        """Amount as seen from the tenant's account balance: positive for a top-up and for
        money a PBX user gave back, negative for a pull and for money given to a user."""
        incoming = self.direction in (self.Direction.TO_TENANT, self.Direction.FROM_USER)
        return self.amount if incoming else -self.amount

    @property
    def is_user_transfer(self) -> bool:
        """Money inside the tenant's account, between its balance and one PBX user's."""
        return self.direction in self.USER_DIRECTIONS


class ResellerBudget(models.Model):
    """What the reseller may still move out of one parent account, in the portal's view.

    ``available`` is an authorization counter: reservations take from it with a conditional
    UPDATE and a CHECK keeps it ≥ 0, so the portal never promises more than the parent holds.
    Every change to it is mirrored by a journal entry on the ``reseller`` account, so the two
    always agree (docs/money.md, "The budget").
    """

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey("tenants.ProviderConnection", on_delete=models.CASCADE, related_name="+")
    currency = models.CharField(max_length=3)
    available = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    provider_balance = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    # Set when staff were told the runway fell below the alert; cleared when it recovers,
    # so one crossing sends one email.
    runway_alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "currency"], name="budget_unique_connection_currency"),
            models.CheckConstraint(condition=Q(available__gte=0), name="budget_available_non_negative"),
        ]

    def __str__(self) -> str:
        return f"budget {self.connection_id} {self.currency}: {self.available}"


class StaffDailyUsage(models.Model):
    """Money one staff member has moved (or has in flight) on one UTC day: the daily limit."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=18, decimal_places=4, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "day", "currency"], name="staff_usage_unique_day"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="staff_usage_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day} {self.amount} {self.currency}"


class JournalEntry(models.Model):
    """One balanced money movement. Lines are written first, the entry last; database
    triggers refuse an entry whose lines do not sum to zero and any UPDATE or DELETE."""

    class Kind(models.TextChoices):
        RESERVE = "reserve", "Reserve"
        SETTLE = "settle", "Settle"
        RELEASE = "release", "Release"
        ADJUST = "adjust", "Adjust to provider"
        DRIFT = "drift", "Drift resolution"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    transfer = models.ForeignKey(Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="entries")
    currency = models.CharField(max_length=3)
    memo = models.CharField(max_length=300, blank=True)
    line_count = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class JournalLine(models.Model):
    """One leg. Positive adds to the account's balance. Accounts: ``reseller`` (the parent's
    money the portal may move), ``in_flight`` (reserved for open transfers), ``tenant``
    (what the portal moved to a tenant), ``world`` (outside: deposits, spending, corrections)."""

    class Account(models.TextChoices):
        RESELLER = "reseller", "Reseller (parent account)"
        IN_FLIGHT = "in_flight", "In flight"
        TENANT = "tenant", "Tenant"
        WORLD = "world", "Outside the portal"

    id = models.BigAutoField(primary_key=True)
    # The entry row is inserted after its lines (the zero-sum check fires on it), so the
    # foreign key must be checked at commit: Django's foreign keys are deferred on SQLite
    # and PostgreSQL.
    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="lines")
    account = models.CharField(max_length=10, choices=Account.choices)
    connection_id = models.BigIntegerField()
    # Plain ids, like the audit log: the ledger outlives what it mentions.
    tenant_id = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    amount = models.DecimalField(max_digits=18, decimal_places=4)

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="journal_line_non_zero")]
        indexes = [
            models.Index(fields=["account", "connection_id", "currency"], name="journal_account_idx"),
            models.Index(fields=["tenant_id", "id"], name="journal_tenant_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.amount} {self.currency}"


class BalanceSnapshot(models.Model):
    """A tenant's provider balance, recorded only when it changed."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: snapshot_tenant_time_idx leads with it (one index less to write for
    # each of a first sync's 530,000 snapshots).
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    balance = models.DecimalField(max_digits=18, decimal_places=4)
    currency = models.CharField(max_length=3, blank=True)
    taken_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "taken_at"], name="snapshot_tenant_time_idx")]

    def __str__(self) -> str:
        return f"{self.tenant_id} {self.balance} at {self.taken_at:%Y-%m-%d %H:%M}"


class ParentBalanceSnapshot(models.Model):
    """The reseller's parent balance at a provider connection, recorded when it changed."""

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey("tenants.ProviderConnection", on_delete=models.CASCADE, related_name="+")
    balance = models.DecimalField(max_digits=18, decimal_places=4)
    currency = models.CharField(max_length=3, blank=True)
    taken_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["connection", "taken_at"], name="parent_snapshot_idx")]

    def __str__(self) -> str:
        return f"parent {self.connection_id} {self.balance} at {self.taken_at:%Y-%m-%d %H:%M}"


class SyncRun(models.Model):
    """One nightly (or staff-started) walk of a connection: balances or reconciliation."""

    class Kind(models.TextChoices):
        BALANCES = "balances", "Balance sync"
        RECONCILE = "reconcile", "Reconciliation"

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    connection = models.ForeignKey("tenants.ProviderConnection", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BALANCES)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Set by the one worker that executes the run (a compare-and-swap), so a duplicated task
    # message cannot walk the same run twice.
    executor = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    seen = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    new = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    total_count = models.PositiveIntegerField(null=True, blank=True)
    last_account_id = models.BigIntegerField(null=True, blank=True)
    total_balance = models.DecimalField(max_digits=22, decimal_places=4, null=True, blank=True)
    # The sum of the portal's own tenants' balances after the run (total_balance counts every
    # child at the provider); the runway is measured from it.
    tenants_balance = models.DecimalField(max_digits=22, decimal_places=4, null=True, blank=True)
    error_message = models.CharField(max_length=1000, blank=True)
    window_from = models.DateTimeField(null=True, blank=True)
    window_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The DB-level lock: at most one running run per connection and kind.
            models.UniqueConstraint(
                fields=["connection", "kind"], condition=Q(state="running"), name="syncrun_one_running_per_connection"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.connection_id} {self.started_at:%Y-%m-%d %H:%M} ({self.state})"

    @property
    def duration_seconds(self) -> float | None:
        end = self.finished_at or (self.heartbeat_at if self.state == self.State.RUNNING else None)
        return (end - self.started_at).total_seconds() if end else None

    @property
    def is_live(self) -> bool:
        return self.state == self.State.RUNNING


class DriftItem(models.Model):
    """A mismatch between the portal's transfers and the provider's history, with evidence."""

    class Kind(models.TextChoices):
        MISSING_AT_PROVIDER = "missing_at_provider", "Portal transfer not found at the provider"
        MISSING_IN_PORTAL = "missing_in_portal", "Provider transfer the portal did not make"
        AMOUNT_MISMATCH = "amount_mismatch", "Amounts differ"
        DUPLICATE_AT_PROVIDER = "duplicate_at_provider", "More than one provider transaction for one reference"
        STATE_MISMATCH = "state_mismatch", "Provider applied a transfer the portal does not count as succeeded"
        THRESHOLD_MISMATCH = "threshold_mismatch", "Low-balance threshold differs at the provider"
        STATUS_MISMATCH = "status_mismatch", "Account status differs at the provider"

    class Resolution(models.TextChoices):
        ACKNOWLEDGED = "acknowledged", "Acknowledged (no ledger change)"
        LEDGER_ADJUSTED = "ledger_adjusted", "Recorded in the ledger"
        PORTAL_UPDATED = "portal_updated", "Portal set to the provider's value"
        PROVIDER_UPDATED = "provider_updated", "Provider set to the portal's value"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    connection = models.ForeignKey("tenants.ProviderConnection", on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="drift_items"
    )
    transfer = models.ForeignKey(Transfer, null=True, blank=True, on_delete=models.PROTECT, related_name="drift")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    # Stable identity of the finding, so a nightly run never records the same drift twice.
    fingerprint = models.CharField(max_length=200, unique=True)
    payment_reference = models.CharField(max_length=126, blank=True)
    provider_txn_id = models.CharField(max_length=64, blank=True)
    portal_amount = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    provider_amount = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    detected_at = models.DateTimeField(default=timezone.now)
    sync_run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution = models.CharField(max_length=20, choices=Resolution.choices, blank=True)
    resolution_note = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant", "resolved_at"], name="drift_tenant_open_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.payment_reference or self.provider_txn_id}"


class LowBalanceAlert(models.Model):
    """One crossing below a tenant's threshold, seen by a sync; the emails go out once each."""

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+")
    balance = models.DecimalField(max_digits=18, decimal_places=4)
    threshold = models.DecimalField(max_digits=18, decimal_places=4)
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    owners_sent_at = models.DateTimeField(null=True, blank=True)
    staff_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"low balance {self.tenant_id}: {self.balance} < {self.threshold}"


class ProviderCallback(models.Model):
    """One account callback the provider posted to the portal's webhook, kept whatever its type.

    Stored once per (connection, account, callback id), so a redelivery is recognised; applied
    at once when the type is one the portal acts on, and kept and shown when it is not.
    """

    class Outcome(models.TextChoices):
        PENDING = "pending", "Received"
        APPLIED = "applied", "Applied"
        IGNORED = "ignored", "Kept (no action)"
        UNKNOWN_TYPE = "unknown_type", "Kept (unknown type)"
        UNKNOWN_ACCOUNT = "unknown_account", "Kept (account not a tenant)"
        FAILED = "failed", "Failed to apply"

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey("tenants.ProviderConnection", on_delete=models.CASCADE, related_name="+")
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    callback_id = models.BigIntegerField()
    account_id = models.BigIntegerField()
    type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.PENDING)
    note = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "account_id", "callback_id"], name="provider_callback_unique"
            ),
        ]
        indexes = [models.Index(fields=["connection", "-id"], name="provider_callback_conn_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.account_id}#{self.callback_id} ({self.outcome})"

import uuid

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class ProviderConnection(models.Model):
    """The reseller's parent account at one provider. Secrets stay in files named here."""

    class Kind(models.TextChoices):
        VOXIMPLANT = "voximplant", "Voximplant"
        VOICEIT = "voiceit", "VoiceIt"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    base_url = models.URLField()
    credentials_path = models.CharField(max_length=500, blank=True, help_text="Voximplant credentials.json")
    parent_api_key_path = models.CharField(max_length=500, blank=True, help_text="Voximplant parent api key file")
    voiceit_credentials_path = models.CharField(max_length=500, blank=True, help_text="VoiceIt voiceit.json")
    parent_account_id = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Which API methods the provider answers, as last probed: {method: "available" |
    # "missing" | "unknown"}, and when (tenants.capability_probe).
    capabilities = models.JSONField(default=dict, blank=True)
    capabilities_checked_at = models.DateTimeField(null=True, blank=True)
    # The provider's account callbacks (webhooks): the URL set on the parent account and its
    # salt (MultiFernet token, never in clear), and when the provider accepted them.
    callback_url = models.CharField(max_length=500, blank=True)
    callback_salt_encrypted = models.TextField(blank=True, editable=False)
    callback_configured_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Tenant(models.Model):
    """A customer company, backed by exactly one provider account."""

    class Status(models.TextChoices):
        PROVISIONING = "provisioning", "Provisioning"
        ACTIVE = "active", "Active"
        FROZEN = "frozen", "Frozen"
        CLOSING = "closing", "Closing"
        CLOSED = "closed", "Closed"
        FAILED = "failed", "Failed"

    class VoiceItType(models.TextChoices):
        MANAGED = "managed", "Managed"
        UNMANAGED = "unmanaged", "Unmanaged"

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    company_name = models.CharField(max_length=200)
    contact_name = models.CharField(max_length=200, blank=True)
    contact_email = models.EmailField(blank=True)
    notes = models.TextField(blank=True)
    plan = models.CharField(max_length=100, blank=True)

    # No index of its own: tenant_conn_status_idx (connection, status, id) leads with it.
    connection = models.ForeignKey(ProviderConnection, on_delete=models.PROTECT, related_name="tenants", db_index=False)
    provider_account_id = models.BigIntegerField(null=True, blank=True)
    account_name = models.CharField(max_length=100, blank=True)
    account_email = models.EmailField(max_length=254, blank=True)
    # The provider's id as text, for every provider: Voximplant's integer child id (also in
    # provider_account_id, which billing's sync matches on) or VoiceIt's sub-account apiKey.
    provider_account_ref = models.CharField(max_length=100, blank=True)
    voiceit_type = models.CharField(max_length=20, choices=VoiceItType.choices, blank=True)
    # MultiFernet token of a JSON object (child api key, VoiceIt token...); see tenants.crypto.
    secrets_encrypted = models.TextField(blank=True, editable=False)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PROVISIONING)
    status_reason = models.CharField(max_length=500, blank=True)

    # Provider data, as last seen by the sync or a provider call. Written by billing's sync.
    balance = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    provider_active = models.BooleanField(null=True, blank=True)
    provider_frozen = models.BooleanField(null=True, blank=True)
    credit_limit = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    low_balance_threshold = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    # The provider's own low-balance threshold (min_balance_to_notify), as last read.
    provider_threshold = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    balance_synced_at = models.DateTimeField(null=True, blank=True)
    is_low_balance = models.BooleanField(default=False)
    has_drift = models.BooleanField(default=False)
    # The owner's choice: every member of the team signs in with a second factor.
    require_two_factor = models.BooleanField(default=False)
    missing_at_provider = models.BooleanField(default=False)

    class Verification(models.TextChoices):
        UNKNOWN = "", "Not read yet"
        REQUIRED = "REQUIRED", "Documents required"
        IN_PROGRESS = "IN_PROGRESS", "Documents under review"
        VERIFIED = "VERIFIED", "Verified"

    # Document verification (GetAccountDocuments), as last read: the status, the date after
    # which an unverified account is held, when it was read, and for which hold date the staff
    # and the owner were warned (one warning per hold date).
    verification_status = models.CharField(max_length=20, choices=Verification.choices, blank=True, default="")
    unverified_hold_until = models.DateTimeField(null=True, blank=True)
    verification_checked_at = models.DateTimeField(null=True, blank=True)
    verification_warned_for = models.DateTimeField(null=True, blank=True)
    # The account's plans and packages (GetAccountPlans), as last read, and when.
    account_plans = models.JSONField(default=list, blank=True)
    account_plans_checked_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "provider_account_id"],
                name="tenant_unique_provider_account",
                condition=models.Q(provider_account_id__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["connection", "provider_account_ref"],
                name="tenant_unique_provider_ref",
                condition=~models.Q(provider_account_ref=""),
            ),
            # Provider rules (unique name, unique email) enforced before any call. A failed
            # create frees its name and email for the next attempt.
            models.UniqueConstraint(
                "connection",
                "account_name",
                name="tenant_unique_account_name",
                condition=~models.Q(account_name="") & ~models.Q(status="failed"),
            ),
            models.UniqueConstraint(
                Lower("account_email"),
                name="tenant_unique_account_email",
                condition=~models.Q(account_email="") & ~models.Q(status="failed"),
            ),
        ]
        indexes = [
            models.Index(fields=["status", "id"], name="tenant_status_idx"),
            models.Index(fields=["connection", "status", "id"], name="tenant_conn_status_idx"),
            models.Index(fields=["balance", "id"], name="tenant_balance_idx"),
            models.Index(fields=["company_name", "id"], name="tenant_company_idx"),
            models.Index(Lower("account_email"), name="tenant_email_lower_idx"),
            models.Index(fields=["account_name"], name="tenant_account_name_idx"),
            models.Index(fields=["is_low_balance", "id"], name="tenant_low_balance_idx"),
            models.Index(fields=["has_drift", "id"], name="tenant_drift_idx"),
            # Case-insensitive prefix search (range scans on lower(...)), see tenants.selectors.
            models.Index(Lower("company_name"), name="tenant_company_lower_idx"),
            models.Index(fields=["provider_account_id"], name="tenant_provider_id_idx"),
            models.Index(fields=["currency", "id"], name="tenant_currency_idx"),
        ]

    def __str__(self) -> str:
        return self.company_name

    @property
    def provider_account(self) -> int | str | None:
        """The id the provider client expects: int for Voximplant, the apiKey for VoiceIt."""
        if self.provider_account_id is not None:
            return self.provider_account_id
        return self.provider_account_ref or None

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.ACTIVE, self.Status.FROZEN)


class Membership(models.Model):
    """A customer user's tenant. The user's role (owner or viewer) is their group."""

    id = models.BigAutoField(primary_key=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class InviteDelivery(models.TextChoices):
        NONE = "", "No invitation"
        PENDING = "pending", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Not delivered"

    # The set-password invitation: where its delivery stands, how many attempts were made and
    # when the last one was. A failed attempt keeps the membership; a retry or a resend sends again.
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    invite_delivery = models.CharField(max_length=10, choices=InviteDelivery.choices, blank=True, default="")
    invite_attempts = models.PositiveSmallIntegerField(default=0)
    invite_attempted_at = models.DateTimeField(null=True, blank=True)
    invite_sent_at = models.DateTimeField(null=True, blank=True)
    # The language the member reads the portal in (a LANGUAGES code; empty: the default), so
    # emails sent by background jobs speak it too.
    language = models.CharField(max_length=10, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


class UnknownProviderAccount(models.Model):
    """A provider account the sync saw that no tenant stands for yet: a candidate for import.

    Written in bulk by billing's balance sync, adopted by tenants.services.tenant_import.
    """

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(ProviderConnection, on_delete=models.CASCADE, related_name="unknown_accounts")
    provider_account_id = models.BigIntegerField()
    account_name = models.CharField(max_length=100, blank=True)
    account_email = models.CharField(max_length=254, blank=True)
    balance = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    active = models.BooleanField(null=True, blank=True)
    frozen = models.BooleanField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "provider_account_id"], name="unknown_account_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account_name} ({self.provider_account_id})"


class TenantOperation(models.Model):
    """One provider-touching operation on a tenant (create, clone, freeze, unfreeze, close).

    Its uuid is the operation id: it is committed before any provider call, claimed with a
    compare-and-swap (state + attempt as the fence) and resolved by lookup when the outcome
    is unknown, so a double-click, a retried task or a killed worker never acts twice.
    """

    class Kind(models.TextChoices):
        CREATE = "create", "Create"
        CLONE = "clone", "Clone"
        FREEZE = "freeze", "Freeze"
        UNFREEZE = "unfreeze", "Unfreeze"
        CLOSE = "close", "Close"
        EDIT = "edit", "Edit at the provider"
        ACTIVATE = "activate", "Enable at the provider"
        SET_THRESHOLD = "set_threshold", "Set the low-balance threshold"
        ROTATE = "rotate", "Rotate credentials"
        CHANGE_PLAN = "change_plan", "Change the account plan"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        # The provider may have acted: the next attempt looks the result up before acting.
        UNKNOWN = "unknown", "Retrying (outcome unknown)"
        # The provider certainly did not act (not sent, throttled): safe to resend.
        RETRYING = "retrying", "Retrying"
        # Close: waiting for billing's balance transfer to settle.
        WAITING = "waiting", "Waiting"
        NEEDS_ATTENTION = "needs_attention", "Needs attention"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Stage(models.TextChoices):
        PROVIDER = "provider", "Provider call"
        FREEZE = "freeze", "Freeze at the provider"
        PULL_BALANCE = "pull_balance", "Pull the balance back"
        WAIT_BALANCE = "wait_balance", "Wait for the balance transfer"
        DELETE = "delete", "Delete or disable at the provider"
        FINISH = "finish", "Mark closed"
        DONE = "done", "Done"

    OPEN_STATES = ("pending", "sending", "unknown", "retrying", "waiting", "needs_attention")
    RUNNABLE_STATES = ("pending", "unknown", "retrying", "waiting")

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Client-supplied idempotency key (a form's hidden field, an API Idempotency-Key).
    key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="operations")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.PROVIDER)
    attempt = models.PositiveIntegerField(default=0)
    # Consecutive attempts that ended without an answer; past a limit a human decides.
    failures = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    params = models.JSONField(default=dict, blank=True)
    # Inputs the provider call needs but a task argument must not carry (the new password).
    secrets_encrypted = models.TextField(blank=True, editable=False)
    # Close: billing's Transfer pk for the balance pulled back to the parent.
    transfer_ref = models.CharField(max_length=64, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    error_field = models.CharField(max_length=100, blank=True)
    notes = models.JSONField(default=list, blank=True)
    job = models.ForeignKey("portal.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One operation at a time per tenant: a second freeze click, or a freeze during a
            # close, is refused instead of racing the first at the provider.
            models.UniqueConstraint(
                fields=["tenant"],
                name="tenant_one_open_operation",
                condition=models.Q(
                    state__in=["pending", "sending", "unknown", "retrying", "waiting", "needs_attention"]
                ),
            ),
        ]
        indexes = [
            models.Index(fields=["state", "next_attempt_at"], name="tenant_op_sweep_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.tenant_id} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class PbxUser(models.Model):
    """An application user inside a tenant's provider account (Voximplant AddUser), as last read.

    ``parent_accounting`` true: the user spends the account's money; false: the user has its
    own balance, funded from the account (billing's transfers with direction to_user).
    A user deleted at the provider keeps its row (``deleted_at``) for its transfer history.
    """

    id = models.BigAutoField(primary_key=True)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="pbx_users")
    provider_user_id = models.BigIntegerField()
    user_name = models.CharField(max_length=50)
    display_name = models.CharField(max_length=255, blank=True)
    application_id = models.BigIntegerField(null=True, blank=True)
    application_name = models.CharField(max_length=200, blank=True)
    parent_accounting = models.BooleanField(default=True)
    active = models.BooleanField(default=True)
    balance = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "provider_user_id"], name="pbx_user_unique_provider_id"),
            models.UniqueConstraint(
                fields=["tenant", "application_id", "user_name"],
                name="pbx_user_unique_name",
                condition=models.Q(deleted_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_name} ({self.provider_user_id})"

    @property
    def has_own_balance(self) -> bool:
        return not self.parent_accounting

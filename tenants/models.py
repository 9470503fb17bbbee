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

    connection = models.ForeignKey(ProviderConnection, on_delete=models.PROTECT, related_name="tenants")
    provider_account_id = models.BigIntegerField(null=True, blank=True)
    account_name = models.CharField(max_length=100, blank=True)
    account_email = models.EmailField(max_length=254, blank=True)
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
    balance_synced_at = models.DateTimeField(null=True, blank=True)
    is_low_balance = models.BooleanField(default=False)
    has_drift = models.BooleanField(default=False)
    missing_at_provider = models.BooleanField(default=False)

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
        ]

    def __str__(self) -> str:
        return self.company_name


class Membership(models.Model):
    """A customer user's tenant. The user's role (owner or viewer) is their group."""

    id = models.BigAutoField(primary_key=True)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

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

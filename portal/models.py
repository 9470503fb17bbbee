import uuid

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One row per state change, written in the same transaction as the change.

    Append-only: the migration installs database triggers that refuse UPDATE and DELETE.
    """

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_label = models.CharField(max_length=200, blank=True)
    # A plain id, not a foreign key: the audit trail outlives anything it mentions.
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    action = models.CharField(max_length=100, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["tenant_id", "-id"], name="audit_tenant_idx")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action}"


class Job(models.Model):
    """A piece of long work (a bulk action, a sync, a provider operation) whose progress and
    outcome a page shows live. Apps keep their own domain rows; this is what the browser polls."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        RETRYING = "retrying", "Retrying"
        NEEDS_ATTENTION = "needs_attention", "Needs attention"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    FINISHED = frozenset({State.SUCCEEDED, State.FAILED})

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=100)
    title = models.CharField(max_length=300)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    # Per-row outcomes for bulk work: [{"key": ..., "label": ..., "ok": bool, "message": ...}]
    results = models.JSONField(default=list, blank=True)
    message = models.CharField(max_length=1000, blank=True)
    params = models.JSONField(default=dict, blank=True)
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.state})"

    @property
    def percent(self) -> int:
        if self.state == self.State.SUCCEEDED:
            return 100
        if not self.total:
            return 0
        return min(100, int(self.done * 100 / self.total))

    @property
    def is_finished(self) -> bool:
        return self.state in self.FINISHED

    @property
    def is_live(self) -> bool:
        """Still changing on its own: not finished and not waiting for a human."""
        return not self.is_finished and self.state != self.State.NEEDS_ATTENTION


class ApiToken(models.Model):
    """A credential for the REST API. Only a sha256 of the secret is stored; the whole token
    (``rp_<prefix>_<secret>``) is shown once, when created. The prefix finds the row.

    Staff tokens act with ``role`` (never more than their owner may); customer tokens also carry
    the tenant they are scoped to and are checked against the owner's membership on every use.
    """

    id = models.BigAutoField(primary_key=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    role = models.CharField(max_length=30)
    # Plain id like the audit trail: the portal app does not depend on the tenants app.
    tenant_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"


class IdempotencyRecord(models.Model):
    """The first response to a POST carrying an Idempotency-Key, per key per token owner, so a
    retry replays it and a different body under the same key is refused."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", "In progress"
        DONE = "done", "Done"

    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices, default=State.IN_PROGRESS)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # A request that died mid-way leaves an in-progress row; after this moment a retry may take over.
    locked_until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_owner_key_unique")]

    def __str__(self) -> str:
        return f"{self.owner_id}:{self.key} ({self.state})"


class ScheduleEntry(models.Model):
    """When one beat entry of CELERY_BEAT_SCHEDULE runs (portal/schedule.py): a crontab
    (minute, hour and the day fields) or, with every_seconds set, an interval. Created from the
    settings on first use; after that, reseller admins change it in the console."""

    id = models.BigAutoField(primary_key=True)
    name = models.CharField(max_length=100, unique=True)
    minute = models.CharField(max_length=64, blank=True)
    hour = models.CharField(max_length=64, blank=True)
    day_of_week = models.CharField(max_length=64, blank=True)
    day_of_month = models.CharField(max_length=64, blank=True)
    month_of_year = models.CharField(max_length=64, blank=True)
    every_seconds = models.PositiveIntegerField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

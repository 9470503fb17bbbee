"""The provider's account callbacks (webhooks): configuring them on the parent account, and
receiving, verifying, storing and applying what the provider posts (docs/providers.md,
"Callbacks").

Each callback is stored once per (connection, account id, callback id) in ProviderCallback,
so a redelivery changes nothing, and applied in the same short transaction:
frozen/unfrozen updates Tenant.provider_frozen (a disagreement with the portal's status is a
STATUS_MISMATCH drift item with the sync's fingerprint, never a silent status change), min_balance records a low-balance
crossing for the usual alert emails, balance_is_changed and the payment types update the
balance and hurry the resolution of the tenant's unknown transfers. Callbacks lost on the way
are caught up by the nightly sync.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from billing import provider as prov
from billing import tasks
from billing.models import BalanceSnapshot, DriftItem, LowBalanceAlert, ProviderCallback, Transfer
from billing.transitions import Actor
from portal.audit import audit_log
from portal.crypto import decrypt_json, encrypt_json
from portal.errors import PortalError
from portal.events import publish_on_commit
from portal.roles import check_permission
from providers.capabilities import Capability
from providers.errors import InvalidArgument, ProviderError
from providers.voximplant.auth import load_parent_api_key
from tenants.models import ProviderConnection, Tenant, TenantOperation

logger = logging.getLogger("billing.callbacks")

#: The permission that guards the provider connection (reseller admins only).
PERMISSION = "tenants.manage"
#: The provider refuses a salt of 40 characters or more.
SALT_MAX = 39
#: Types that say money moved on the account (their sub-object has the transaction).
MONEY_TYPES = frozenset(
    {"balance_is_changed", "card_payment", "wire_transfer", "robokassa_payment", "invoice_received"}
)
FREEZE_TYPES = {"account_is_frozen": True, "account_is_unfrozen": False}
Q4 = Decimal("0.0001")


# -- configuration -------------------------------------------------------------------------


def webhook_url(connection: ProviderConnection) -> str:
    """The portal's own public address for this connection's callbacks (SITE_URL based)."""
    path = reverse("hooks:voximplant", args=[connection.uuid])
    return str(settings.SITE_URL).rstrip("/") + path


def new_salt() -> str:
    """A random salt the provider accepts (32 URL-safe characters, under its 40 limit)."""
    return secrets.token_urlsafe(24)


def stored_salt(connection: ProviderConnection) -> str | None:
    if not connection.callback_salt_encrypted:
        return None
    salt = decrypt_json(connection.callback_salt_encrypted).get("salt")
    return salt if isinstance(salt, str) else None


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise PortalError("Enter the URL the provider should post to.", field="callback_url")
    if len(url) > 500:
        raise PortalError("The URL is too long (500 characters at most).", field="callback_url")
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise PortalError("The URL may not contain spaces or invisible characters.", field="callback_url")
    return url


def _clean_salt(salt: str | None) -> tuple[str, bool]:
    """(salt, generated). Blank: a new random one. The length rule is the provider's own."""
    if salt is None or not salt.strip():
        return new_salt(), True
    if any(ch.isspace() or not ch.isprintable() for ch in salt):
        raise PortalError("The salt may not contain spaces or invisible characters.", field="callback_salt")
    return salt, False


_PROVIDER_FIELDS = {"callback_url": "callback_url", "callback_salt": "callback_salt"}


def callbacks_configure(
    *,
    actor: Actor,
    connection: ProviderConnection,
    url: str,
    salt: str | None = None,
    request: HttpRequest | None = None,
) -> ProviderConnection:
    """Set the callback URL and salt on the parent account; the portal keeps them only once
    the provider accepted them. Reseller admins only."""
    check_permission(actor, PERMISSION, doing="change where the provider posts its callbacks")
    if not prov.supports(connection, Capability.ACCOUNT_CALLBACKS):
        raise PortalError(
            prov.unsupported_reason(connection, Capability.ACCOUNT_CALLBACKS) or "Not supported.",
            code="unsupported",
        )
    clean_url = _clean_url(url)
    clean_salt, generated = _clean_salt(salt)
    try:
        prov.set_account_callbacks(connection, url=clean_url, salt=clean_salt)
    except InvalidArgument as exc:
        message = "The provider refused the URL." if exc.field == "callback_url" else "The provider refused the salt."
        if exc.field == "callback_salt":
            message += f" It must be shorter than {SALT_MAX + 1} characters."
        raise PortalError(message, field=_PROVIDER_FIELDS.get(exc.field or "", "callback_url")) from exc
    except ProviderError as exc:
        raise PortalError(
            "The provider did not confirm the change; nothing was saved here. Try again.", code="provider_error"
        ) from exc
    now = timezone.now()
    with transaction.atomic():
        ProviderConnection.objects.filter(pk=connection.pk).update(
            callback_url=clean_url,
            callback_salt_encrypted=encrypt_json({"salt": clean_salt}),
            callback_configured_at=now,
        )
        audit_log(
            actor=actor,
            action="billing.callbacks.configure",
            request=request,
            data={"connection": connection.name, "url": clean_url, "salt_generated": generated},
        )
    connection.refresh_from_db()
    return connection


# -- receiving -------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the webhook answers: an HTTP status and a JSON body (no secrets)."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Incoming:
    callback_id: int
    account_id: int
    type: str
    hash: str
    payload: dict[str, Any]


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def parse_body(raw: bytes) -> list[Incoming]:
    """The posted ``{"callbacks": [...]}``; PortalError (400) for anything else."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PortalError("The body is not JSON.", code="bad_json") from exc
    items = data.get("callbacks") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise PortalError('Expected {"callbacks": [...]} with at least one callback.', code="bad_shape")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise PortalError(f"Callback {n} is not an object.", code="bad_shape")
        callback_id, account_id = _as_int(item.get("callback_id")), _as_int(item.get("account_id"))
        kind, digest = item.get("type"), item.get("hash")
        if callback_id is None or account_id is None or not isinstance(kind, str) or not kind:
            raise PortalError(f"Callback {n} lacks callback_id, account_id or type.", code="bad_shape")
        if not isinstance(digest, str) or len(kind) > 100:
            raise PortalError(f"Callback {n} has no hash or a bad type.", code="bad_shape")
        payload = {k: v for k, v in item.items() if k != "hash"}
        out.append(Incoming(callback_id, account_id, kind, digest, payload))
    return out


def expected_hash(salt: str, account_id: int, api_key: str, callback_id: int) -> str:
    """md5(salt + account_id + api_key + callback_id) as lowercase hex (provider's rule)."""
    text = f"{salt}{account_id}{api_key}{callback_id}"
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _verify(connection: ProviderConnection, items: list[Incoming]) -> Reply | None:
    salt = stored_salt(connection)
    if salt is None:
        return Reply(403, {"error": "callbacks are not configured for this connection"})
    try:
        api_key = load_parent_api_key(connection.parent_api_key_path).reveal()
    except ProviderError:
        logger.error("connection %s: the parent api key cannot be read; callbacks not verified", connection.pk)
        return Reply(503, {"error": "the portal cannot verify callbacks right now"})
    bad = [
        i
        for i in items
        if not hmac.compare_digest(
            expected_hash(salt, i.account_id, api_key, i.callback_id).encode(), i.hash.strip().lower().encode()
        )
    ]
    if bad:
        logger.warning("connection %s: %d callback(s) with a bad hash refused", connection.pk, len(bad))
        return Reply(403, {"error": "bad hash", "refused": len(bad)})
    return None


def callbacks_receive(*, connection_uuid: UUID, raw: bytes) -> Reply:
    """The webhook: parse, verify every hash, then store and apply each callback once."""
    connection = ProviderConnection.objects.filter(uuid=connection_uuid, kind="voximplant").first()
    if connection is None:
        return Reply(404, {"error": "not found"})
    try:
        items = parse_body(raw)
    except PortalError as exc:
        return Reply(400, {"error": exc.message, "code": exc.code})
    refused = _verify(connection, items)
    if refused is not None:
        return refused
    new = 0
    for item in items:
        if _store_and_apply(connection, item):
            new += 1
    return Reply(200, {"received": len(items), "new": new, "duplicates": len(items) - new})


def _store_and_apply(connection: ProviderConnection, item: Incoming) -> bool:
    """Store the callback and apply it, in one short transaction; False for a redelivery."""
    with transaction.atomic():
        callback, created = ProviderCallback.objects.get_or_create(
            connection=connection,
            account_id=item.account_id,
            callback_id=item.callback_id,
            defaults={"type": item.type, "payload": item.payload},
        )
        if not created:
            return False
        try:
            with transaction.atomic():
                outcome, note, tenant_id = _apply(connection, callback)
        except Exception:  # noqa: BLE001 - kept as failed; the nightly sync still converges
            logger.exception("applying callback %s failed", callback.pk)
            outcome, note, tenant_id = ProviderCallback.Outcome.FAILED, "could not be applied", None
        ProviderCallback.objects.filter(pk=callback.pk).update(
            outcome=outcome, note=note[:500], tenant_id=tenant_id, applied_at=timezone.now()
        )
    return True


def _apply(connection: ProviderConnection, callback: ProviderCallback) -> tuple[str, str, int | None]:
    tenant = (
        Tenant.objects.select_for_update()
        .filter(connection=connection, provider_account_id=callback.account_id)
        .first()
    )
    if tenant is None:
        if connection.parent_account_id is not None and callback.account_id == connection.parent_account_id:
            return ProviderCallback.Outcome.IGNORED, "the parent account's own event", None
        return ProviderCallback.Outcome.UNKNOWN_ACCOUNT, "no tenant has this account", None
    kind = callback.type
    if kind in FREEZE_TYPES:
        return (*_apply_frozen(connection, tenant, callback, FREEZE_TYPES[kind]), tenant.pk)
    if kind == "min_balance":
        return (*_apply_min_balance(tenant, callback), tenant.pk)
    if kind in MONEY_TYPES:
        return (*_apply_money(tenant, callback), tenant.pk)
    return ProviderCallback.Outcome.UNKNOWN_TYPE, "kept, not acted on", tenant.pk


def _apply_frozen(
    connection: ProviderConnection, tenant: Tenant, callback: ProviderCallback, frozen: bool
) -> tuple[str, str]:
    now = timezone.now()
    Tenant.objects.filter(pk=tenant.pk).update(provider_frozen=frozen, updated_at=now)
    tenant.provider_frozen = frozen
    note = "frozen at the provider" if frozen else "unfrozen at the provider"
    if record_status_drift(connection=connection, tenant=tenant, source=f"callback {callback.callback_id}"):
        note += f"; the portal shows it {tenant.status}: drift recorded"
    return ProviderCallback.Outcome.APPLIED, note


# The operations that change a tenant's status: while one is in flight the provider may
# rightly differ from the portal (the sync skips these too).
_STATUS_OPS = (
    TenantOperation.Kind.FREEZE,
    TenantOperation.Kind.UNFREEZE,
    TenantOperation.Kind.ACTIVATE,
    TenantOperation.Kind.CLOSE,
)


def status_fingerprint(tenant: Tenant) -> str:
    """The sync's fingerprint of a status disagreement (billing.sync), so a callback and the
    next sync record one item, not two."""
    return f"status:{tenant.pk}:{tenant.status}:{tenant.provider_active}:{tenant.provider_frozen}"


def record_status_drift(*, connection: ProviderConnection, tenant: Tenant, source: str) -> DriftItem | None:
    """A STATUS_MISMATCH item when the provider's flags disagree with the portal's status, by
    the sync's rule: an active tenant frozen (or disabled) at the provider, or a frozen tenant
    the provider reports enabled and not frozen. None when they agree, an operation on the
    status is in flight, or the same finding was recorded before."""
    active, frozen = tenant.provider_active, tenant.provider_frozen
    disagree = (tenant.status == Tenant.Status.ACTIVE and (frozen is True or active is False)) or (
        tenant.status == Tenant.Status.FROZEN and active is True and frozen is not True
    )
    if not disagree:
        return None
    if TenantOperation.objects.filter(
        tenant_id=tenant.pk, state__in=TenantOperation.OPEN_STATES, kind__in=_STATUS_OPS
    ).exists():
        return None
    item, created = DriftItem.objects.get_or_create(
        fingerprint=status_fingerprint(tenant),
        defaults={
            "connection": connection,
            "tenant": tenant,
            "kind": DriftItem.Kind.STATUS_MISMATCH,
            "evidence": {
                "portal_status": tenant.status,
                "provider_active": active,
                "provider_frozen": frozen,
                "seen_by": source,
            },
        },
    )
    if not created:
        return None
    Tenant.objects.filter(pk=tenant.pk).update(has_drift=True, updated_at=timezone.now())
    return item


def _balance(callback: ProviderCallback) -> Decimal | None:
    value = callback.payload.get("balance")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        # JSON numbers arrive as float; 4 places is what the provider reports.
        amount = Decimal(str(value)).quantize(Q4)
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _is_latest(callback: ProviderCallback) -> bool:
    """No later callback of this account was applied already (redeliveries come out of order)."""
    return not (
        ProviderCallback.objects.filter(
            connection_id=callback.connection_id,
            account_id=callback.account_id,
            callback_id__gt=callback.callback_id,
            outcome=ProviderCallback.Outcome.APPLIED,
        ).exists()
    )


def _set_balance(tenant: Tenant, balance: Decimal, now: datetime, *, judge_low: bool = True) -> bool:
    """Store the balance the callback carries; with ``judge_low``, raise or re-arm the
    low-balance flag against the portal's threshold as the sync does. True when it changed."""
    if tenant.balance is not None and tenant.balance == balance:
        return False
    Tenant.objects.filter(pk=tenant.pk).update(balance=balance, balance_synced_at=now, updated_at=now)
    BalanceSnapshot.objects.create(tenant=tenant, balance=balance, currency=tenant.currency, taken_at=now)
    tenant.balance = balance
    threshold = tenant.low_balance_threshold
    if not judge_low:
        return True
    if threshold is not None and balance < threshold:
        _low_balance(tenant, balance, threshold)
    elif tenant.is_low_balance:
        Tenant.objects.filter(pk=tenant.pk).update(is_low_balance=False)
        tenant.is_low_balance = False
    return True


def _low_balance(tenant: Tenant, balance: Decimal, threshold: Decimal | None) -> bool:
    """One LowBalanceAlert per crossing (the sync's rule): none while the flag is still up."""
    if not Tenant.objects.filter(pk=tenant.pk, is_low_balance=False).update(is_low_balance=True):
        return False
    LowBalanceAlert.objects.create(
        tenant=tenant,
        balance=balance,
        threshold=threshold if threshold is not None else balance,
        currency=tenant.currency,
    )
    transaction.on_commit(_dispatch_alerts)
    tenant.is_low_balance = True
    return True


def _dispatch_alerts() -> None:
    try:
        tasks.low_balance_alerts_task.delay()
    except Exception:  # noqa: BLE001 - the alert stays queued in the table for the next run
        logger.warning("could not publish the low-balance alert task", exc_info=True)


def _apply_min_balance(tenant: Tenant, callback: ProviderCallback) -> tuple[str, str]:
    balance = _balance(callback)
    now = timezone.now()
    if balance is not None and _is_latest(callback):
        # The provider says its threshold was crossed: that is the crossing recorded below.
        _set_balance(tenant, balance, now, judge_low=False)
    balance = balance if balance is not None else tenant.balance
    if balance is None:
        return ProviderCallback.Outcome.APPLIED, "below the provider's threshold (no balance given)"
    threshold = tenant.low_balance_threshold if tenant.low_balance_threshold is not None else tenant.provider_threshold
    if _low_balance(tenant, balance, threshold):
        return ProviderCallback.Outcome.APPLIED, "low balance: alert queued"
    return ProviderCallback.Outcome.APPLIED, "low balance already alerted for this crossing"


def _reconcile_later(transfer_id: int) -> Callable[[], None]:
    def publish() -> None:
        tasks.transfer_reconcile_task.delay(transfer_id)

    return publish


def _apply_money(tenant: Tenant, callback: ProviderCallback) -> tuple[str, str]:
    balance = _balance(callback)
    notes = []
    if balance is not None and _is_latest(callback):
        notes.append("balance updated" if _set_balance(tenant, balance, timezone.now()) else "balance unchanged")
    else:
        notes.append("balance not newer: kept")
    unknown = list(Transfer.objects.filter(tenant=tenant, state=Transfer.State.UNKNOWN).values_list("pk", flat=True))
    for transfer_id in unknown:
        publish_on_commit(_reconcile_later(transfer_id), what=f"billing.transfer_reconcile {transfer_id}")
    if unknown:
        notes.append(f"{len(unknown)} unknown transfer(s) sent to resolution")
    return ProviderCallback.Outcome.APPLIED, "; ".join(notes)


# -- reading ---------------------------------------------------------------------------------


def latest_callbacks(*, limit: int = 100) -> list[ProviderCallback]:
    """The newest callbacks of every connection, for staff."""
    return list(ProviderCallback.objects.select_related("connection", "tenant").order_by("-id")[:limit])

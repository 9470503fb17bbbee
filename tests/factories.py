"""The one way the tests build portal rows: factory_boy factories that leave rows as the
services would (an active tenant with a provider account and a synced balance, a user with
exactly one role, a customer with a membership).

Provider-side behaviour is never faked here: a connection built by these factories points at a
port nobody listens on, so pages and selectors read the portal's own rows. Tests that need a
provider use the `sandbox` fixture and the `vox_connection` / `voiceit_connection` fixtures.

    TenantFactory(company_name="Acme", balance="42.50")
    UserFactory(role="reseller_billing")
    CustomerFactory(username="acme-owner", tenant=acme)                 # an owner of Acme
    CustomerFactory(tenant=acme, role="customer_viewer")               # a viewer of Acme
    TransferFactory(tenant=acme, amount="5.00", reason="top-up")       # a succeeded top-up
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

PASSWORD = "correct-horse-battery-staple-9"
OFFLINE_URL = "http://127.0.0.1:9"  # the discard port: nothing answers there


def _decimal(value: Any) -> Any:
    return Decimal(value) if isinstance(value, str | int) and not isinstance(value, bool) else value


class ProviderConnectionFactory(DjangoModelFactory):
    """A Voximplant connection whose provider is never reached (``voiceit=True`` for VoiceIt)."""

    class Meta:
        model = "tenants.ProviderConnection"

    class Params:
        voiceit = factory.Trait(kind="voiceit")

    name = factory.Sequence(lambda n: f"Connection {n}")
    kind = "voximplant"
    base_url = OFFLINE_URL
    currency = "USD"


class TenantFactory(DjangoModelFactory):
    """An active tenant with a provider account and a balance synced five minutes ago."""

    class Meta:
        model = "tenants.Tenant"

    company_name = factory.Sequence(lambda n: f"Company {n}")
    connection = factory.SubFactory(ProviderConnectionFactory)
    provider_account_id = factory.Sequence(lambda n: 900000 + n)
    # The services record the provider's account id as the reference too.
    provider_account_ref = factory.LazyAttribute(
        lambda t: "" if t.provider_account_id is None else str(t.provider_account_id)
    )
    account_name = factory.Sequence(lambda n: f"acct-{n:05d}")
    account_email = factory.Sequence(lambda n: f"acct{n}@example.com")
    status = "active"
    balance = Decimal("100.00")
    currency = "USD"
    balance_synced_at = factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5))

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        # Money given as text ("42.50") is stored and kept on the instance as a Decimal.
        for name in ("balance", "low_balance_threshold", "credit_limit"):
            if name in kwargs:
                kwargs[name] = _decimal(kwargs[name])
        return kwargs


def _role(default: str | None) -> Any:
    """A post-generation step giving the user exactly one role (``role=None`` for none)."""

    def assign(user: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        from portal.roles import assign_role

        role = default if extracted is None else extracted
        if role and create:
            assign_role(user, role)

    return factory.PostGeneration(assign)


class UserFactory(DjangoModelFactory):
    """A user who logs in with PASSWORD; ``role=`` gives them one role, none by default."""

    class Meta:
        model = "auth.User"
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password(PASSWORD)
    role = _role(None)


class MembershipFactory(DjangoModelFactory):
    """A user's place in a tenant (a customer owner of a new tenant unless told otherwise)."""

    class Meta:
        model = "tenants.Membership"

    user = factory.SubFactory(UserFactory, role="customer_owner")
    tenant = factory.SubFactory(TenantFactory)


def _membership(user: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
    if create:
        MembershipFactory(user=user, tenant=extracted if extracted is not None else TenantFactory(**kwargs))


class CustomerFactory(UserFactory):
    """A customer owner (``role="customer_viewer"`` for a viewer) who belongs to ``tenant=``
    (a new tenant when none is given)."""

    role = _role("customer_owner")
    tenant = factory.PostGeneration(_membership)


class TransferFactory(DjangoModelFactory):
    """A top-up the portal made and the provider confirmed (``state``/``direction`` to change)."""

    class Meta:
        model = "billing.Transfer"

    tenant = factory.SubFactory(TenantFactory)
    connection = factory.LazyAttribute(lambda t: t.tenant.connection)
    child_account_id = factory.LazyAttribute(lambda t: t.tenant.provider_account_id)
    direction = "to_tenant"
    amount = Decimal("10.00")
    currency = factory.LazyAttribute(lambda t: t.tenant.currency or "USD")
    reason = factory.Sequence(lambda n: f"transfer {n}")
    payment_reference = factory.LazyFunction(lambda: f"rp-{uuid.uuid4()}")
    state = "succeeded"
    completed_at = factory.LazyAttribute(lambda t: timezone.now() if t.state == "succeeded" else None)
    dup_check_from = factory.LazyAttribute(lambda t: (t.completed_at or timezone.now()) - timedelta(days=2))

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs["amount"] = _decimal(kwargs["amount"])
        return kwargs


def balance_history(tenant: Any, values: list[str], *, step: timedelta = timedelta(days=1)) -> None:
    """Balance snapshots, one per ``step``, the last one ``step`` ago, oldest first."""
    from billing.models import BalanceSnapshot

    start = timezone.now() - step * len(values)
    BalanceSnapshot.objects.bulk_create(
        [
            BalanceSnapshot(tenant=tenant, balance=Decimal(v), currency=tenant.currency, taken_at=start + step * i)
            for i, v in enumerate(values)
        ]
    )


def api_token(user: Any, role: str | None = None, tenant: Any = None, name: str = "") -> str:
    """A raw API token minted through the token service, with the user's own role by default."""
    from api.tokens import api_token_create
    from portal.roles import role_of

    _token, raw = api_token_create(
        actor=user, name=name or f"token-{uuid.uuid4().hex[:8]}", role=role or str(role_of(user)), tenant=tenant
    )
    return raw


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}

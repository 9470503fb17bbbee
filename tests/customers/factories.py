"""Test data for the customer and API tests: rows as the services leave them. Provider-side
behaviour is never faked here; tests that need it use the sandbox fixture."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from tests.conftest import make_user

_seq = itertools.count(1)


def make_connection(name: str = "", base_url: str = "http://127.0.0.1:9", **extra: Any) -> Any:
    from tenants.models import ProviderConnection

    return ProviderConnection.objects.create(
        name=name or f"conn-{next(_seq)}",
        kind=extra.pop("kind", "voximplant"),
        base_url=base_url,
        currency="USD",
        **extra,
    )


def make_tenant(
    company: str = "", *, connection: Any = None, balance: str | None = "100.00", status: str = "active", **extra: Any
) -> Any:
    from tenants.models import Tenant

    n = next(_seq)
    return Tenant.objects.create(
        company_name=company or f"Company {n}",
        connection=connection or make_connection(),
        provider_account_id=extra.pop("provider_account_id", 900000 + n),
        account_name=extra.pop("account_name", f"acct-{n:05d}"),
        account_email=extra.pop("account_email", f"acct{n}@example.com"),
        status=status,
        balance=Decimal(balance) if balance is not None else None,
        currency="USD",
        balance_synced_at=timezone.now() - timedelta(minutes=5),
        **extra,
    )


def make_customer(username: str, tenant: Any, role: str = "customer_owner", **extra: Any) -> Any:
    from tenants.models import Membership

    email = extra.pop("email", None)
    user = make_user(username, role, **extra)
    if email:
        user.email = email
        user.save(update_fields=["email"])
    Membership.objects.create(user=user, tenant=tenant)
    return user


def make_snapshots(tenant: Any, values: list[str], *, step: timedelta = timedelta(days=1)) -> None:
    from billing.models import BalanceSnapshot

    start = timezone.now() - step * len(values)
    BalanceSnapshot.objects.bulk_create(
        [
            BalanceSnapshot(tenant=tenant, balance=Decimal(v), currency=tenant.currency, taken_at=start + step * i)
            for i, v in enumerate(values)
        ]
    )


def make_token(user: Any, role: str | None = None, tenant: Any = None, name: str = "") -> str:
    from portal.api.tokens import api_token_create
    from portal.roles import role_of

    _token, raw = api_token_create(
        actor=user, name=name or f"token-{next(_seq)}", role=role or str(role_of(user)), tenant=tenant
    )
    return raw

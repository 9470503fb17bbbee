"""Tenant isolation, by walking the URL resolver: no customer reaches another tenant's data,
by any route, method or id, and no write lets a customer pick their tenant or their role.

Routes are discovered from django.urls, not listed here, so a route added tomorrow by any
app is walked without editing this file. For every route with an object parameter, a
customer of another tenant (session and API token) tries GET, POST, PUT, PATCH and DELETE
with the ids of a victim tenant's objects: the answer must be 404 (or 403 where the route is
staff-only) and must equal the answer for an id that does not exist, so nothing tells a
foreign object from a missing one; and the victim's data must be unchanged afterwards.
Every route that is not explicitly public must require a login.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import product
from typing import Any

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import (
    CustomerFactory,
    ProviderConnectionFactory,
    TenantFactory,
    TransferFactory,
    api_token,
    balance_history,
)

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"<(?:(?P<conv>\w+):)?(?P<name>\w+)>")

# Routes anyone may open (by url name). Everything else must send an anonymous visitor to
# the login page (HTML) or answer 401 (API).
PUBLIC = {
    "login",
    "logout",
    "healthz",
    "healthz_live",
    "healthz_ready",
    "metrics",  # guarded by its own bearer token instead of a login (tests/portal/test_metrics.py)
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    "api:not_found",
    "hooks:voximplant",  # the provider's callbacks: no login, every callback checked by its hash
    "csp_report",  # the browser's Content-Security-Policy violation reports: logged, nothing else
    "set_language",  # the language switcher: sets a cookie, on the sign-in pages too
}
# Regular-expression routes outside the admin, which the walk cannot fill automatically;
# a new one fails test_every_regex_route_is_known until it is handled here.
KNOWN_REGEX = {"api:not_found"}
# Apps whose rows are candidates for object ids in URLs.
OBJECT_APPS = {"tenants", "billing", "portal", "customers", "auth", "reselling"}
SKIP_MODELS = {"auth.Permission", "auth.Group", "portal.AuditEvent"}
VICTIM_COMPANY = "Zeta Victim Holdings"
VICTIM_EMAIL = "victim-owner@zeta.example"


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "console/tenants/<uuid:tenant_uuid>/"
    name: str  # namespaced url name, "" when unnamed
    is_regex: bool

    @property
    def params(self) -> list[tuple[str, str]]:
        return [(m["conv"] or "str", m["name"]) for m in PARAM.finditer(self.template)]

    @property
    def is_admin(self) -> bool:
        return self.template.startswith("admin/")

    @property
    def is_api(self) -> bool:
        return self.template.startswith("api/")


def walk(
    patterns: list[Any] | None = None, prefix: str = "", namespace: str = "", regex: bool = False
) -> Iterator[Route]:
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        part = str(entry.pattern)
        is_regex = regex or entry.pattern.__class__.__name__ == "RegexPattern"
        if isinstance(entry, URLResolver):
            ns = namespace
            if entry.namespace:
                ns = f"{namespace}:{entry.namespace}" if namespace else entry.namespace
            yield from walk(entry.url_patterns, prefix + part, ns, is_regex)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace and entry.name else (entry.name or "")
            yield Route(prefix + part, name, is_regex)


def all_routes() -> list[Route]:
    return list(walk())


def fill(route: Route, values: dict[str, str]) -> str:
    return "/" + PARAM.sub(lambda m: values[m["name"]], route.template)


# --- the world: a victim tenant full of objects, and an outsider ----------------------------


@pytest.fixture
def world(db: None) -> dict[str, Any]:
    from billing.models import SyncRun
    from portal.jobs import job_create
    from tenants.models import TenantOperation

    connection = ProviderConnectionFactory(name="victim-connection")
    victim = TenantFactory(
        company_name=VICTIM_COMPANY, connection=connection, balance="123.45", low_balance_threshold=Decimal("5")
    )
    victim_owner = CustomerFactory(username="victim-owner", tenant=victim, email=VICTIM_EMAIL)
    victim_viewer = CustomerFactory(username="victim-viewer", tenant=victim, role="customer_viewer")
    api_token(victim_owner, tenant=victim, name="victim token")
    balance_history(victim, ["100", "110", "123.45"])
    job = job_create(kind="tenants.freeze", title="Freeze", tenant_id=victim.pk)
    TenantOperation.objects.create(tenant=victim, kind="freeze", state="succeeded", job=job)
    TransferFactory(tenant=victim, amount="10.00", reason="seed", completed_at=None)
    seed_victim_pbx_user(victim)
    SyncRun.objects.create(connection=connection, state="succeeded")
    seed_victim_invoice(victim)
    candidates = collect_candidates()
    outsider_tenant = TenantFactory(
        company_name="Outsider Inc", connection=ProviderConnectionFactory(name="outsider-connection")
    )
    outsider = CustomerFactory(username="outsider-owner", tenant=outsider_tenant)
    outsider_viewer = CustomerFactory(username="outsider-viewer", tenant=outsider_tenant, role="customer_viewer")
    return {
        "victim": victim,
        "victim_owner": victim_owner,
        "victim_viewer": victim_viewer,
        "candidates": candidates,
        "outsider": outsider,
        "outsider_viewer": outsider_viewer,
        "outsider_token": api_token(outsider, tenant=outsider_tenant),
    }


def seed_victim_pbx_user(victim: Any) -> None:
    """A PBX user of the victim with its own balance, and money moved to it."""
    from tenants.models import PbxUser

    user = PbxUser.objects.create(
        tenant=victim, provider_user_id=41, user_name="victim-user", parent_accounting=False, balance=Decimal("3")
    )
    TransferFactory(
        tenant=victim, amount="3.00", reason="seed", direction="to_user", pbx_user=user, provider_user_id=41
    )


def seed_victim_invoice(victim: Any) -> None:
    """An issued invoice of the victim, with a credit note and a payment (reselling)."""
    from reselling.invoices import credit_note_create, invoice_run_execute, invoice_run_start
    from reselling.models import Charge, Invoice, Payment
    from tests.factories import UserFactory

    Charge.objects.create(
        tenant=victim,
        kind="usage",
        period="2026-01-01",
        occurred_at="2026-01-05T00:00:00Z",
        currency="USD",
        revenue=Decimal("30"),
        cost=Decimal("10"),
        description="Victim calls",
        source_key="victim:usage",
    )
    run = invoice_run_start(actor=None, period=date(2026, 1, 1), enqueue=False)
    invoice_run_execute(run_id=run.pk)
    invoice = Invoice.objects.get(tenant=victim)
    credit_note_create(actor=UserFactory(role="reseller_admin"), invoice=invoice, amount="1", reason="victim credit")
    Payment.objects.create(invoice=invoice, amount=Decimal("2"), method="bank", received_on=date(2026, 1, 20))


def collect_candidates() -> dict[str, list[tuple[str, str]]]:
    """{"uuid": [(model label, value)], "int": [...]} for rows that exist now (the victim's)."""
    found: dict[str, list[tuple[str, str]]] = {"uuid": [], "int": []}
    for model in apps.get_models():
        label = model._meta.label
        if model._meta.app_label not in OBJECT_APPS or label in SKIP_MODELS:
            continue
        names = {f.name for f in model._meta.get_fields()}
        rows = list(model.objects.order_by("pk")[:3])
        for row in rows:
            if "uuid" in names:
                found["uuid"].append((label, str(row.uuid)))
            if isinstance(row.pk, int):
                found["int"].append((label, str(row.pk)))
    return found


def values_for(param: tuple[str, str], candidates: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Ids to try for one parameter: the rows of the model its name suggests (tenant_uuid →
    Tenant), or of every model when the name suggests none."""
    conv, name = param
    kind = "uuid" if conv == "uuid" else "int" if conv == "int" else None
    if kind is None:
        return ["x"]
    stem = re.sub(r"_(uuid|id|pk)$", "", name).replace("_", "").lower()
    pool = candidates[kind]
    matching = [
        v for label, v in pool if (model := label.split(".")[1].lower()).endswith(stem) or model.startswith(stem)
    ]
    return sorted(set(matching or [v for _, v in pool]))


def missing_value(conv: str) -> str:
    return str(uuid.uuid4()) if conv == "uuid" else "987654321" if conv == "int" else "x"


def request(client: Any, method: str, url: str, headers: dict[str, str] | None = None) -> Any:
    if method == "get":
        return client.get(url, headers=headers or {})
    return getattr(client, method)(url, data="{}", content_type="application/json", headers=headers or {})


def victim_state(world: dict[str, Any]) -> dict[str, Any]:
    from billing.models import Transfer
    from portal.models import ApiToken
    from tenants.models import Membership, Tenant, TenantOperation

    tenant = Tenant.objects.get(pk=world["victim"].pk)
    return {
        "tenant": (tenant.status, tenant.balance, tenant.low_balance_threshold, tenant.company_name),
        "members": sorted(Membership.objects.filter(tenant=tenant).values_list("user_id", flat=True)),
        "transfers": sorted(Transfer.objects.filter(tenant=tenant).values_list("uuid", "state")),
        "pbx_users": sorted(tenant.pbx_users.values_list("user_name", "active", "deleted_at")),
        "operations": TenantOperation.objects.filter(tenant=tenant).count(),
        "tokens": sorted(ApiToken.objects.filter(tenant_id=tenant.pk).values_list("prefix", "revoked_at")),
        "users": sorted(
            type(world["victim_owner"])
            .objects.filter(membership__tenant=tenant)
            .values_list("username", "is_active", "password")
        ),
    }


# --- the tests ---------------------------------------------------------------------------


def test_the_walk_finds_the_routes_of_every_app() -> None:
    names = {r.name for r in all_routes()}
    for expected in (
        "customer:home",
        "customer:team_remove",
        "api:tenant",
        "api:transfer",
        "api:tenant_account_plan_change",
        "api:customer_verification",
        "tenants:detail",
        "api_tokens:revoke",
        "job",
        "audit",
    ):
        assert expected in names, expected


def test_every_regex_route_is_known() -> None:
    unknown = {r.name or r.template for r in all_routes() if r.is_regex and not r.is_admin} - KNOWN_REGEX
    assert not unknown, f"teach the isolation walk how to fill {unknown}"


def outsider_expectation(route: Route, response: Any) -> bool:
    if route.is_admin:
        # The admin is for is_staff users only; customers are sent to its login page.
        return response.status_code == 302 and response["Location"].startswith("/admin/login/")
    return response.status_code in (403, 404)


@pytest.mark.parametrize("persona", ["outsider", "outsider_viewer"])
def test_a_customer_of_another_tenant_cannot_reach_any_object_of_the_victim(client, world, persona) -> None:
    client.force_login(world[persona])
    before = victim_state(world)
    walked, failures = 0, []
    for route in all_routes():
        params = route.params
        if not params or route.is_regex or route.name in PUBLIC:
            continue
        per_param = [values_for(p, world["candidates"]) for p in params]
        combos = list(product(*per_param))[:60] if not route.is_admin else [tuple(v[0] for v in per_param)]
        missing_url = fill(route, {name: missing_value(conv) for conv, name in params})
        for method in METHODS:
            missing = request(client, method, missing_url)
            for combo in combos:
                url = fill(route, {name: value for (_, name), value in zip(params, combo, strict=True)})
                response = request(client, method, url)
                walked += 1
                if not outsider_expectation(route, response) or (
                    not route.is_admin and response.status_code != missing.status_code
                ):
                    failures.append(
                        f"{method.upper()} {url} ({route.name}) -> {response.status_code}, "
                        f"missing id -> {missing.status_code}"
                    )
    assert not failures, "\n".join(failures[:40])
    assert walked > 100
    assert victim_state(world) == before


def test_a_customer_token_cannot_reach_any_api_object_of_the_victim(client, world) -> None:
    headers = {"Authorization": f"Bearer {world['outsider_token']}"}
    before = victim_state(world)
    failures = []
    for route in all_routes():
        if not route.is_api or not route.params or route.is_regex:
            continue
        per_param = [values_for(p, world["candidates"]) for p in route.params]
        for method in METHODS:
            for combo in list(product(*per_param))[:60]:
                url = fill(route, {name: value for (_, name), value in zip(route.params, combo, strict=True)})
                response = request(client, method, url, headers)
                if response.status_code not in (403, 404) or "error" not in response.json():
                    failures.append(f"{method.upper()} {url} -> {response.status_code}")
    assert not failures, "\n".join(failures[:40])
    assert victim_state(world) == before


def test_pages_without_ids_show_an_outsider_nothing_of_the_victim(client, world) -> None:
    client.force_login(world["outsider"])
    leaks = []
    for route in all_routes():
        if route.params or route.is_regex or route.is_admin or route.name in ("logout",):
            continue
        for url in (fill(route, {}), fill(route, {}) + "?format=csv", fill(route, {}) + "?q=zeta"):
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            text = body.decode(errors="replace")
            if VICTIM_COMPANY in text or VICTIM_EMAIL in text or "123.45" in text:
                leaks.append(f"{url} ({route.name}) -> {response.status_code} shows the victim")
    assert not leaks, "\n".join(leaks)


def test_every_non_public_route_requires_login(client, world) -> None:
    failures = []
    for route in all_routes():
        if route.name in PUBLIC or route.is_regex and not route.is_admin:
            continue
        values = {
            name: (values_for((conv, name), world["candidates"]) or [missing_value(conv)])[0]
            for conv, name in route.params
        }
        try:
            url = fill(route, values)
        except KeyError:
            continue
        if route.is_regex:  # admin regex routes: their index pages
            continue
        for method in ("get", "post"):
            response = request(client, method, url)
            if route.is_api:
                ok = response.status_code == 401 or (
                    response.status_code == 302 and "/accounts/login/" in response["Location"]
                )
            elif route.is_admin:
                ok = response.status_code == 302 and response["Location"].startswith("/admin/login/")
                ok = ok or route.template in ("admin/login/", "admin/logout/")
            else:
                ok = response.status_code == 302 and response["Location"].startswith("/accounts/login/")
            if not ok:
                failures.append(f"anonymous {method.upper()} {url} ({route.name}) -> {response.status_code}")
    assert not failures, "\n".join(failures)


def test_customer_writes_cannot_pick_a_tenant_or_a_role(client, world, mailoutbox) -> None:
    """The team invite ignores tenant and role fields (the tenant is the login's, the role
    always viewer); the API refuses bodies that name them."""
    from tenants.models import Membership

    outsider = world["outsider"]
    client.force_login(outsider)
    response = client.post(
        "/me/team/invite/",
        {
            "email": "new@outsider.example",
            "tenant": world["victim"].pk,
            "tenant_id": world["victim"].pk,
            "role": "customer_owner",
        },
    )
    assert response.status_code == 302
    invited = Membership.objects.select_related("user").get(user__email="new@outsider.example")
    assert invited.tenant_id == outsider.membership.tenant_id
    assert list(invited.user.groups.values_list("name", flat=True)) == ["customer_viewer"]
    response = client.post("/me/alerts/", {"threshold": "7", "tenant": world["victim"].pk})
    assert response.status_code == 302
    world["victim"].refresh_from_db()
    assert world["victim"].low_balance_threshold == Decimal("5")

"""No input gives a 5xx: the hostile corpus (tests/security/corpus.py) through every HTML route
and every API operation, as a reseller admin and as a customer owner.

HTML routes come from the URL resolver (the walk of tests/test_isolation.py), so a new page is
covered without editing this file. Each route is opened with every value class of the corpus
in some query parameter (the tenant filters, the names its own GET forms use and the common
ones: q, page, cursor, limit, since, ...), with every parameter name at least once, with
repeated parameters; then every POST form the page renders is sent back with hostile values
in each of its fields. API operations come from the OpenAPI schema the portal serves: every
documented query and header parameter and every body field gets hostile values, and each
operation gets bodies that are not JSON objects at all.

Sampling keeps it fast: per route and per operation every value class is sent at least once
(rotating over the parameters) and every parameter gets at least one hostile value."""

from __future__ import annotations

import json
import uuid
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from django.core.cache import cache
from django.test import Client

from tests.factories import TransferFactory, api_token, balance_history, bearer
from tests.security.corpus import COMMON_PARAMETERS, JSON, RAW_BODIES, TEXT
from tests.security.logins import sign_in
from tests.test_isolation import Route, all_routes, fill

pytestmark = pytest.mark.django_db

# Routes that would end the walk's own session, and the Django admin (is_staff users only,
# a separate application with its own forms).
SKIP_NAMES = {"logout"}
SKIP_ACTIONS = ("/accounts/logout/",)
TEXT_VALUES = [value for _, value in TEXT]


class Forms(HTMLParser):
    """The forms of a page: method, action and fields (name -> default value)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._current = {"method": a.get("method", "get").lower(), "action": a.get("action", ""), "fields": {}}
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "textarea", "select") and a.get("name"):
            if tag == "input" and a.get("type") in ("checkbox", "radio") and "checked" not in a:
                self._current["fields"].setdefault(a["name"], "")
                return
            self._current["fields"][a["name"]] = a.get("value", "")
            self._select = a["name"] if tag == "select" else None
        elif tag == "option" and self._current is not None and self._select:
            if not self._current["fields"].get(self._select):
                self._current["fields"][self._select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "select":
            self._select = None


def forms_of(body: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(body)
    return parser.forms


def _body(response: Any) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


class Walk:
    """Sends requests and collects every answer of 500 or more."""

    def __init__(self, client: Client, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}
        self.failures: list[str] = []
        self.sent = 0
        self.pages = 0  # routes that answered 200: the walk reached them, not only their guard
        self.forms = 0

    def send(self, method: str, url: str, **kwargs: Any) -> Any:
        # /healthz answers 503 while a dependency is down (no worker heartbeat here): that is
        # its answer, whatever the query string.
        self.sent += 1
        if self.sent % 500 == 0:
            cache.clear()  # throttle counters: the walk is not a flood to be slowed down
        response = getattr(self.client, method)(url, headers=self.headers, **kwargs)
        body = _body(response)
        if response.status_code >= 500 and not (response.status_code == 503 and url.startswith("/healthz")):
            shown = {k: (v[:60] + "…" if isinstance(v, str) and len(v) > 60 else v) for k, v in kwargs.items()}
            self.failures.append(f"{method.upper()} {url[:200]} {shown} -> {response.status_code} {body[:120]!r}")
        return response, body


def _filled(route: Route, ids: dict[str, str]) -> str | None:
    values = {}
    for conv, name in route.params:
        if conv == "uuid":
            values[name] = ids.get(name, str(uuid.uuid4()))
        elif conv == "int":
            values[name] = ids.get(name, "1")
        else:
            return None  # password-reset tokens and the like: their pages are public forms
    return fill(route, values)


def _query_names(body: str) -> list[str]:
    from tenants.selectors import FILTER_NAMES

    names = list(dict.fromkeys([*FILTER_NAMES, *COMMON_PARAMETERS]))
    for form in forms_of(body):
        if form["method"] == "get":
            names.extend(n for n in form["fields"] if n not in names)
    return names


def walk_page(walk: Walk, url: str) -> None:
    response, body = walk.send("get", url)
    text = body.decode(errors="replace")
    names = _query_names(text)
    # Every value class in one request, each in its own parameter (a page that refuses the
    # caller reads none of them; one that reads them may stop at the first it refuses).
    walk.send("get", f"{url}?{urlencode([(names[i % len(names)], v) for i, v in enumerate(TEXT_VALUES)])}")
    if response.status_code == 200:
        walk.pages += 1
        # Every value class and every parameter name once more on their own: value i in name i.
        for i in range(max(len(TEXT_VALUES), len(names))):
            walk.send("get", f"{url}?{urlencode({names[i % len(names)]: TEXT_VALUES[i % len(TEXT_VALUES)]})}")
        # All names at once, and each repeated.
        walk.send("get", f"{url}?{urlencode({name: '²' for name in names})}")
        walk.send("get", f"{url}?{urlencode([(name, v) for name in names for v in ('1', '2')])}")
        walk_forms(walk, url, text)


def walk_forms(walk: Walk, url: str, text: str) -> None:
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for form in forms_of(text):
        action = form["action"] or url
        if form["method"] != "post" or action.startswith(SKIP_ACTIONS) or urlsplit(action).netloc:
            continue
        fields = {k: v for k, v in form["fields"].items() if k != "csrfmiddlewaretoken"}
        key = (urlsplit(action).path, tuple(sorted(fields)))
        if key in seen or not fields:
            continue
        seen.add(key)
        walk.forms += 1
        names = list(fields)
        # Every value class and every field at least once (value i in field i, both wrap).
        for i in range(max(len(TEXT_VALUES), len(names))):
            walk.send("post", action, data={**fields, names[i % len(names)]: TEXT_VALUES[i % len(TEXT_VALUES)]})
        walk.send("post", action, data={name: ["1", "2"] for name in names})  # repeated fields


@pytest.fixture
def world(vox_connection: Any, customer_owner: Any, reseller_admin: Any) -> dict[str, Any]:
    from billing.models import SyncRun
    from portal.jobs import job_create
    from tenants.models import TenantOperation

    tenant = customer_owner.membership.tenant
    tenant.connection = vox_connection
    tenant.save(update_fields=["connection"])
    balance_history(tenant, ["100", "90", "80"])
    transfer = TransferFactory(tenant=tenant, amount="10.00", reason="seed", completed_at=None)
    job = job_create(kind="tenants.freeze", title="Freeze", tenant_id=tenant.pk)
    operation = TenantOperation.objects.create(tenant=tenant, kind="freeze", state="failed", job=job)
    run = SyncRun.objects.create(connection=vox_connection, state="succeeded")
    token = api_token(customer_owner, tenant=tenant)
    pbx_user = tenant.pbx_users.create(provider_user_id=77, user_name="walk-user", parent_accounting=False)
    ids = {
        "tenant_uuid": str(tenant.uuid),
        "transfer_uuid": str(transfer.uuid),
        "job_uuid": str(job.uuid),
        "operation_uuid": str(operation.uuid),
        "sync_run_uuid": str(run.uuid),
        "run_uuid": str(run.uuid),
        "member_id": str(customer_owner.membership.pk),
        "user_id": str(customer_owner.pk),
        "pbx_user_id": str(pbx_user.pk),
    }
    return {"ids": ids, "owner": customer_owner, "admin": reseller_admin, "customer_token": token}


def html_routes() -> list[Route]:
    return [
        r
        for r in all_routes()
        if not r.is_api and not r.is_admin and not r.is_regex and r.name not in SKIP_NAMES and r.template != "admin/"
    ]


@pytest.mark.parametrize("persona", ["admin", "owner"])
def test_no_html_route_answers_hostile_input_with_a_5xx(world, persona) -> None:
    user = world[persona]
    client = Client(raise_request_exception=False)
    walk = Walk(client)
    routes = 0
    for route in html_routes():
        url = _filled(route, world["ids"])
        if url is None:
            continue
        sign_in(client, user)  # a form of the walk may have ended the session or its second factor
        walk_page(walk, url)
        routes += 1
    assert routes > 30
    assert walk.pages >= (25 if persona == "admin" else 8), walk.pages
    assert walk.forms >= (15 if persona == "admin" else 5), walk.forms
    assert not walk.failures, f"{len(walk.failures)} answers of 5xx:\n" + "\n".join(walk.failures[:40])


# --- the API, from its schema -----------------------------------------------------------


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def walk_operation(
    walk: Walk, schema: dict[str, Any], path: str, method: str, op: dict[str, Any], ids: dict[str, str]
) -> None:
    url = path
    for name, value in ids.items():
        url = url.replace("{" + name + "}", value)
    url = url.replace("{", "").replace("}", "")  # an unknown path parameter: its literal name (404)
    params = op.get("parameters", [])
    query = [p["name"] for p in params if p.get("in") == "query"]
    header = [p["name"] for p in params if p.get("in") == "header"]
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    fields = list(_resolve(schema, body_schema).get("properties", {})) if body_schema else []
    json_values = TEXT_VALUES + [value for _, value in JSON]

    def call(
        q: dict[str, str] | None = None, body: Any = None, raw: bytes | None = None, h: dict[str, str] | None = None
    ) -> None:
        target = f"{url}?{urlencode(q)}" if q else url
        saved = walk.headers
        walk.headers = {**saved, **(h or {})}
        try:
            if method == "get":
                walk.send("get", target)
            else:
                data: Any = raw if raw is not None else json.dumps({} if body is None else body)
                walk.send(method, target, data=data, content_type="application/json")
        finally:
            walk.headers = saved

    call()
    for i, value in enumerate(TEXT_VALUES):
        if query:
            call(q={query[i % len(query)]: value})
        if header and "\r" not in value and "\n" not in value and "\x00" not in value:
            call(h={header[i % len(header)]: value})
    for j, name in enumerate(query):
        call(q={name: TEXT_VALUES[(j * 7 + 1) % len(TEXT_VALUES)]})
    if query:
        call(q=[(name, v) for name in query for v in ("1", "2")])  # type: ignore[arg-type]
    if method == "get":
        return
    # Every value class and every field once (value i in field i), then all fields at once.
    for i in range(max(len(json_values), len(fields))):
        call(body={(fields[i % len(fields)] if fields else "unknown_field"): json_values[i % len(json_values)]})
    for j in range(3):
        call(body={f: json_values[(j * 11 + k) % len(json_values)] for k, f in enumerate(fields)})
    for _, raw in RAW_BODIES:
        call(raw=raw)


@pytest.mark.parametrize(
    "persona,schema_url", [("admin", "/api/schema/?format=json"), ("owner", "/api/customer/schema/?format=json")]
)
def test_no_api_operation_answers_hostile_input_with_a_5xx(world, persona, schema_url) -> None:
    from api.tokens import api_token_create

    user = world[persona]
    if persona == "admin":
        _token, raw_token = api_token_create(actor=user, name="walk", role="reseller_admin", tenant=None)
    else:
        raw_token = world["customer_token"]
    client = Client(raise_request_exception=False)
    response = client.get(schema_url, headers=bearer(raw_token))
    assert response.status_code == 200, response.content[:200]
    schema = json.loads(response.content)
    walk = Walk(client, bearer(raw_token))
    ops = operations(schema)
    for path, method, op in ops:
        walk_operation(walk, schema, path, method, op, world["ids"])
    assert len(ops) >= (20 if persona == "admin" else 4)
    assert not walk.failures, f"{len(walk.failures)} answers of 5xx:\n" + "\n".join(walk.failures[:40])

"""The price-plan and margin API says in its schema the rules it enforces, and answers what no
schema can say (an id of nothing, the plan's state) with the documented 404 and 409."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from reselling.models import PricePlan
from tests.factories import TenantFactory, api_token, bearer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(reseller_billing: Any) -> dict[str, str]:
    cache.clear()
    return bearer(api_token(reseller_billing))


@pytest.fixture
def schema(client: Any, reseller_admin: Any) -> dict[str, Any]:
    client.force_login(reseller_admin)
    body = client.get("/api/schema/?format=json").json()
    client.logout()
    return body


def _post(client: Any, path: str, body: Any, headers: dict[str, str]) -> Any:
    return client.post(path, body, content_type="application/json", headers=headers)


def _matches(rule: dict[str, Any], value: Any) -> bool:
    string, integer = rule["anyOf"]
    if isinstance(value, int):
        return integer["minimum"] <= value <= integer["maximum"]
    return re.search(string["pattern"], value) is not None


def test_the_create_schema_states_what_a_new_plan_needs(client, staff, schema) -> None:
    create = schema["components"]["schemas"]["PlanCreateIn"]
    assert {"name", "currency"} <= set(create["required"])
    assert re.search(create["properties"]["currency"]["pattern"], " usd ")
    assert not re.search(create["properties"]["currency"]["pattern"], "US")
    margin_branch = next(b for b in create["anyOf"] if b["properties"]["topup_rule"]["enum"] == ["margin"])
    assert margin_branch["required"] == ["topup_rule", "topup_margin_percent"]
    percent = create["properties"]["topup_margin_percent"]
    fee = create["properties"]["topup_fee"]
    # The schema and the API agree, value by value.
    for value, accepted in (("99.9999", True), ("100", False), ("", True), ("05", False), (99, True), (100, False)):
        assert _matches(percent, value) is accepted, value
        body = {"name": f"Plan {value!r}", "currency": "usd", "topup_margin_percent": value}
        assert (_post(client, "/api/v1/plans", body, staff).status_code == 201) is accepted, value
    for value, accepted in (("0.001", False), ("0.010", True), ("9999999999.99", True), ("10000000000", False)):
        assert _matches(fee, value) is accepted, value
        body = {"name": f"Fee {value}", "currency": "USD", "topup_fee": value}
        assert (_post(client, "/api/v1/plans", body, staff).status_code == 201) is accepted, value
    assert not _matches(margin_branch["properties"]["topup_margin_percent"], "0.0000")
    zero_margin = {"name": "No margin", "currency": "USD", "topup_rule": "margin", "topup_margin_percent": "0.0000"}
    assert _post(client, "/api/v1/plans", zero_margin, staff).status_code == 400
    assert PricePlan.objects.get(name="Plan ''").currency == "USD"  # "usd", kept as the code


def test_reminder_days_are_a_set_kept_in_order(client, staff, schema) -> None:
    days = schema["components"]["schemas"]["PlanCreateIn"]["properties"]["reminder_days"]
    assert days["uniqueItems"] is True and days["maxItems"] == 10
    body = {"name": "Reminders", "currency": "USD", "reminder_days": [10, 3]}
    created = _post(client, "/api/v1/plans", body, staff)
    assert created.status_code == 201, created.content
    assert created.json()["reminder_days"] == [3, 10]
    twice = _post(client, "/api/v1/plans", {**body, "name": "Twice", "reminder_days": [3, 3]}, staff)
    assert twice.status_code == 400 and "reminder_days" in twice.json()["error"]["fields"]


def test_an_assignment_of_no_plan_is_404_and_of_an_unassignable_one_409(client, staff, vox_connection) -> None:
    tenant = TenantFactory(connection=vox_connection)
    path = f"/api/v1/tenants/{tenant.uuid}/plan-assignments"
    missing = _post(client, path, {"plan": 987654}, staff)
    assert missing.status_code == 404 and "plan" in missing.json()["error"]["fields"]
    euro = PricePlan.objects.create(name="Euro", currency="EUR")
    mismatch = _post(client, path, {"plan": euro.pk}, staff)
    assert mismatch.status_code == 409 and mismatch.json()["error"]["code"] == "currency_mismatch"
    archived = PricePlan.objects.create(name="Old", currency="USD", archived_at=timezone.now())
    gone = _post(client, path, {"plan": archived.pk}, staff)
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "plan_archived"
    usd = PricePlan.objects.create(name="Dollar", currency="USD")
    tomorrow = (timezone.now().date() + timedelta(days=1)).isoformat()
    assert _post(client, path, {"plan": usd.pk, "effective_from": tomorrow}, staff).status_code == 201


def test_the_margin_report_takes_a_connection_id_as_its_schema_says(client, staff, schema, vox_connection) -> None:
    parameters = schema["paths"]["/api/v1/margin"]["get"]["parameters"]
    pattern = next(p for p in parameters if p["name"] == "connection")["schema"]["pattern"]
    for value in (str(vox_connection.pk), "", str(vox_connection.uuid)):
        answer = client.get("/api/v1/margin", {"connection": value}, headers=staff)
        assert (answer.status_code == 200) is bool(re.search(pattern, value)), (value, answer.content)


def test_a_read_the_provider_refuses_is_a_documented_409(client, reseller_admin, vox_connection, schema) -> None:
    # The sandbox knows no account of this id: the provider refuses the read.
    tenant = TenantFactory(connection=vox_connection)
    headers = bearer(api_token(reseller_admin))
    path = f"/api/v1/tenants/{tenant.uuid}/account-plans/available"
    refused = client.get(path, headers=headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "provider_error"
    documented = schema["paths"]["/api/v1/tenants/{tenant_uuid}/account-plans/available"]["get"]["responses"]["409"]
    assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}

"""The PBX users page, shared by the customer portal (the owner acts, viewers read) and the
staff console (staff who may move money act): its context, and every action it posts (read
now, create, rename, disable / enable, delete, move money to or from a user). Each action
calls its service; what the page offers comes from the services' own checks.

The staff views live here too; the customer views (customers/pbx_users.py) call the same
helpers with the tenant of the signed-in customer.
"""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing import services
from billing.models import Transfer
from billing.money import parse_typed_amount
from billing.transfers import tenant_currency
from portal.errors import FieldErrors, PortalError
from portal.live import part_response, requested_part
from portal.roles import Actor, require
from tenants.models import PbxUser, Tenant
from tenants.services import users as pbx

ACTIONS = ("read", "create", "update", "delete", "transfer")
PART = "user_transfers"


def pbx_user_get(*, tenant: Tenant, user_id: object) -> PbxUser:
    """One of this tenant's users by the portal's id; 404 for another tenant's or a missing one."""
    try:
        pk = int(str(user_id))
    except (TypeError, ValueError):
        raise Http404("No such user") from None
    user = PbxUser.objects.filter(tenant=tenant, pk=pk).first()
    if user is None:
        raise Http404("No such user")
    return user


def has_open_user_transfers(user: PbxUser) -> bool:
    """Money still on its way to or from this user (its delete waits for it)."""
    return Transfer.objects.filter(pbx_user=user, state__in=Transfer.OPEN).exists()


def user_transfers(*, tenant: Tenant, limit: int = 20) -> list[Transfer]:
    return list(
        Transfer.objects.filter(tenant=tenant, direction__in=Transfer.USER_DIRECTIONS)
        .select_related("pbx_user")
        .order_by("-id")[:limit]
    )


def users_context(request: HttpRequest, tenant: Tenant, *, base: str, staff: bool) -> dict[str, Any]:
    actor: Actor = request.user
    transfers = user_transfers(tenant=tenant)
    # A transfer that ended since the last read changed a balance: read again.
    version = ",".join(str(t.pk) for t in transfers if t.completed_at is not None)[:200]
    note = pbx.pbx_users_read_on_open(actor=actor, tenant=tenant, version=version)
    users = list(PbxUser.objects.filter(tenant=tenant, deleted_at__isnull=True))
    refusal = pbx.pbx_user_manage_refusal(actor, tenant)

    def shown(words: str | None) -> str | None:
        # Staff read the matrix's reason (which method, checked when); customers plain words.
        return words if staff else pbx.customer_refusal(tenant, words)

    rows = []
    for user in users:
        rows.append(
            {
                "user": user,
                "delete_refusal": pbx.pbx_user_delete_refusal(user),
                "transfer_refusal": shown(
                    services.user_transfer_refusal(actor, tenant, user, Transfer.Direction.TO_USER)
                ),
            }
        )
    return {
        "tenant": tenant,
        "rows": rows,
        "transfers": transfers,
        "may_manage": refusal is None,
        "manage_refusal": shown(refusal) if pbx.may_manage_pbx_users(actor, tenant) else None,
        "read_note": note,
        "base": base,
        "staff": staff,
        "currency": tenant_currency(tenant),
        "key": uuid_mod.uuid4().hex,
    }


def transfers_part(request: HttpRequest, tenant: Tenant, *, staff: bool) -> HttpResponse | None:
    if requested_part(request, PART):
        return part_response(
            request, "billing/_pbx_user_transfers.html", {"transfers": user_transfers(tenant=tenant), "staff": staff}
        )
    return None


def _errors(exc: PortalError) -> list[str]:
    items = exc.errors if isinstance(exc, FieldErrors) else [exc]
    return [e.message for e in items]


def handle_action(request: HttpRequest, tenant: Tenant, action: str, user_id: object = None) -> None:
    """Run one posted action; its outcome becomes a message on the page."""
    if action not in ACTIONS:
        raise Http404("No such action")
    actor: Actor = request.user
    post = request.POST
    user = pbx_user_get(tenant=tenant, user_id=user_id) if user_id is not None else None
    try:
        if action == "read":
            listed = pbx.pbx_users_read(actor=actor, tenant=tenant, request=request)
            messages.success(request, f"Read {len(listed)} users from the provider.")
        elif action == "create":
            made = pbx.pbx_user_create(
                actor=actor,
                tenant=tenant,
                user_name=post.get("user_name", ""),
                display_name=post.get("display_name", ""),
                password=post.get("password", ""),
                own_balance=post.get("balance") == "own",
                request=request,
            )
            messages.success(request, f"User {made.user_name} was created.")
        elif action == "update" and user is not None:
            active = {"enable": True, "disable": False}.get(post.get("active", ""))
            changed = pbx.pbx_user_update(
                actor=actor,
                tenant=tenant,
                pbx_user=user,
                user_name=post.get("user_name") or None,
                display_name=post.get("display_name") or None,
                active=active,
                request=request,
            )
            messages.success(request, f"User {changed.user_name} was saved.")
        elif action == "delete" and user is not None:
            open_transfers = has_open_user_transfers(user)
            pbx.pbx_user_delete(
                actor=actor, tenant=tenant, pbx_user=user, open_transfers=open_transfers, request=request
            )
            messages.success(request, f"User {user.user_name} was deleted.")
        elif action == "transfer" and user is not None:
            amount = parse_typed_amount(post.get("amount", ""), currency=tenant_currency(tenant))
            transfer = services.user_transfer_create(
                actor=actor,
                tenant=tenant,
                pbx_user=user,
                amount=amount,
                direction=post.get("direction", ""),
                idempotency_key=f"form:{post.get('key', '')[:64]}" if post.get("key") else None,
                request=request,
            )
            messages.info(request, f"{services_sentence(transfer)}: recorded, being sent.")
        else:
            raise Http404("No such user")
    except PortalError as exc:
        for text in _errors(exc):
            messages.error(request, text)


def services_sentence(transfer: Transfer) -> str:
    from billing.selectors import user_transfer_sentence

    return user_transfer_sentence(transfer)


# -- staff views ------------------------------------------------------------------------------


def _tenant(tenant_uuid: uuid_mod.UUID) -> Tenant:
    tenant = Tenant.objects.select_related("connection").filter(uuid=tenant_uuid).first()
    if tenant is None:
        raise Http404("No such tenant")
    return tenant


@require("console.view")
def staff_users(request: HttpRequest, tenant_uuid: uuid_mod.UUID) -> HttpResponse:
    tenant = _tenant(tenant_uuid)
    part = transfers_part(request, tenant, staff=True)
    if part is not None:
        return part
    base = reverse("billing:tenant_users", kwargs={"tenant_uuid": tenant.uuid})
    return render(request, "billing/pbx_users.html", users_context(request, tenant, base=base, staff=True))


@require("console.view")
@require_POST
def staff_users_action(
    request: HttpRequest, tenant_uuid: uuid_mod.UUID, action: str, user_id: int | None = None
) -> HttpResponse:
    """Every action of the staff users page (``action`` comes from the route, not the client)."""
    tenant = _tenant(tenant_uuid)
    handle_action(request, tenant, action, user_id)
    return redirect("billing:tenant_users", tenant_uuid=tenant.uuid)

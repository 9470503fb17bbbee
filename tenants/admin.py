"""The Django admin for superusers: the same operations through the same services. The add form
runs tenant_create; the actions freeze, unfreeze, clone and close through tenants.services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.errors import PortalError
from tenants import services
from tenants.capability_probe import connection_probe_later
from tenants.forms import ReasonForm, TenantCloneForm
from tenants.models import ProviderConnection, Tenant, TenantOperation, UnknownProviderAccount


class SuperuserOnly:
    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_superuser


class TenantAddForm(forms.ModelForm):
    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to generate one.",
    )
    invite_owner_email = forms.EmailField(required=False, help_text="Optional: invite the customer's owner.")
    low_balance_threshold = forms.CharField(required=False, label="Low-balance alert below")

    class Meta:
        model = Tenant
        fields = [
            "connection",
            "voiceit_type",
            "company_name",
            "contact_name",
            "contact_email",
            "account_name",
            "account_email",
            "plan",
            "notes",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors:
            return cleaned
        try:
            # The create service's own validation: the admin shows exactly the console's errors.
            services.validate_account_input(
                connection=cleaned.get("connection"),
                company_name=cleaned.get("company_name"),
                account_name=cleaned.get("account_name"),
                account_email=cleaned.get("account_email"),
                contact_name=cleaned.get("contact_name", ""),
                contact_email=cleaned.get("contact_email", ""),
                password=cleaned.get("password") or None,
                voiceit_type=cleaned.get("voiceit_type", ""),
                notes=cleaned.get("notes", ""),
                plan=cleaned.get("plan", ""),
                low_balance_threshold=cleaned.get("low_balance_threshold") or None,
                invite_owner_email=cleaned.get("invite_owner_email", ""),
            )
        except PortalError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return cleaned

    def validate_unique(self) -> None:
        # The service checks uniqueness with the provider's rules (case-insensitive email).
        return None


@admin.register(Tenant)
class TenantAdmin(SuperuserOnly, admin.ModelAdmin):
    list_display = ("company_name", "account_name", "connection", "status", "balance", "currency", "created_at")
    list_filter = ("status", "connection", "is_low_balance", "has_drift")
    search_fields = ("=provider_account_id", "=provider_account_ref", "^account_name", "^company_name")
    show_full_result_count = False  # no second COUNT(*) over 530k rows per page
    list_select_related = ("connection",)
    actions = ["freeze_selected", "unfreeze_selected", "clone_selected", "close_selected"]
    readonly_fields = [f.name for f in Tenant._meta.fields if f.name not in ("secrets_encrypted",)]
    exclude = ("secrets_encrypted",)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a tenant is closed (services.tenant_close), never deleted

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change page is read-only (every field is in readonly_fields); actions change state.
        return request.user.is_superuser

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [*TenantAddForm.Meta.fields, "low_balance_threshold", "password", "invite_owner_email"]
        return self.readonly_fields

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = TenantAddForm
            kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        if change:
            return  # nothing is editable here; see the actions
        data = form.cleaned_data
        tenant = services.tenant_create(
            actor=request.user,
            connection=data["connection"],
            company_name=data["company_name"],
            account_name=data["account_name"],
            account_email=data["account_email"],
            contact_name=data.get("contact_name", ""),
            contact_email=data.get("contact_email", ""),
            password=data.get("password") or None,
            voiceit_type=data.get("voiceit_type", ""),
            notes=data.get("notes", ""),
            plan=data.get("plan", ""),
            low_balance_threshold=data.get("low_balance_threshold") or None,
            invite_owner_email=data.get("invite_owner_email", ""),
            request=request,
        )
        # The admin logs and redirects with obj: make it the row the service wrote.
        for field in Tenant._meta.concrete_fields:
            setattr(obj, field.attname, getattr(tenant, field.attname))
        obj._state.adding = False

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    def _reason_action(
        self, request: HttpRequest, queryset: QuerySet[Tenant], service: Any, verb: str
    ) -> HttpResponse | None:
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done = 0
            for tenant in queryset.select_related("connection"):
                try:
                    service(actor=request.user, tenant=tenant, reason=form.cleaned_data["reason"], request=request)
                    done += 1
                except PortalError as exc:
                    self.message_user(request, f"{tenant}: {exc.message}", level=messages.ERROR)
            if done:
                self.message_user(
                    request,
                    f"{verb}: started for {done} tenant(s); progress shows on each tenant's console page.",
                    level=messages.SUCCESS,
                )
            return None
        return render(
            request,
            "admin/tenants/action_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{verb} tenants",
                "queryset": queryset,
                "form": form,
                "action": request.POST.get("action"),
                "checkbox_name": ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Freeze selected tenants")
    def freeze_selected(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        return self._reason_action(request, queryset, services.tenant_freeze, "Freeze")

    @admin.action(description="Unfreeze selected tenants")
    def unfreeze_selected(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        return self._reason_action(request, queryset, services.tenant_unfreeze, "Unfreeze")

    @admin.action(description="Close selected tenants")
    def close_selected(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        return self._reason_action(request, queryset, services.tenant_close, "Close")

    @admin.action(description="Clone the selected tenant")
    def clone_selected(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one tenant to clone.", level=messages.ERROR)
            return None
        source = queryset.select_related("connection").get()
        form = TenantCloneForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            data = form.cleaned_data
            try:
                tenant = services.tenant_clone(
                    actor=request.user,
                    source=source,
                    company_name=data["company_name"],
                    account_name=data["account_name"],
                    account_email=data["account_email"],
                    password=data["password"] or None,
                    operation_key=data["operation_key"] or None,
                    request=request,
                )
            except PortalError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                self.message_user(request, f"Cloning {source} into {tenant}.", level=messages.SUCCESS)
                return None
        return render(
            request,
            "admin/tenants/action_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Clone {source}",
                "queryset": queryset,
                "form": form,
                "action": request.POST.get("action"),
                "checkbox_name": ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )


@admin.register(TenantOperation)
class TenantOperationAdmin(SuperuserOnly, admin.ModelAdmin):
    list_display = ("uuid", "tenant", "kind", "state", "stage", "attempt", "created_at")
    list_filter = ("kind", "state")
    exclude = ("secrets_encrypted",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UnknownProviderAccount)
class UnknownProviderAccountAdmin(SuperuserOnly, admin.ModelAdmin):
    list_display = ("provider_account_id", "account_name", "account_email", "connection", "balance", "last_seen_at")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProviderConnection)
class ProviderConnectionAdmin(SuperuserOnly, admin.ModelAdmin):
    list_display = ("name", "kind", "base_url", "currency", "is_active", "capabilities_checked_at")
    readonly_fields = ("capabilities", "capabilities_checked_at")

    def save_model(self, request: HttpRequest, obj: ProviderConnection, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or {"kind", "base_url", "credentials_path"} & set(form.changed_data):
            # A new (or re-pointed) connection: ask its provider which methods it answers,
            # after the commit, so the save does not wait for the network.
            connection_probe_later(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""Forms only parse and render; the rules live in tenants.services (which raises PortalError
on the field concerned, and the views put that message on the form)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms

from portal import inputs
from portal.errors import FieldErrors, PortalError
from tenants.models import ProviderConnection, Tenant


def apply_portal_error(form: forms.Form, exc: PortalError) -> None:
    """Show a service's errors, each on its field (or above the form when it names none we
    show); a field that already shows an error keeps it rather than getting a second."""
    for error in exc.errors if isinstance(exc, FieldErrors) else [exc]:
        field = error.field if error.field in form.fields else None
        if field is not None and field in form.errors:
            continue
        form.add_error(field, error.message)


def typed_threshold_field(form: forms.Form) -> Decimal | None:
    """The low-balance threshold as a person types it ("12,50" is 12.50; portal.inputs)."""
    try:
        return inputs.typed_threshold(form.cleaned_data.get("low_balance_threshold"), field="low_balance_threshold")
    except PortalError as exc:
        raise forms.ValidationError(exc.message) from None


class _OperationKeyMixin(forms.Form):
    # A fresh id per rendered form: a double-click or a resubmitted page sends the same one,
    # and the service returns the tenant the first submission made.
    operation_key = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("operation_key", uuid.uuid4().hex)


class AccountFieldsMixin(forms.Form):
    company_name = forms.CharField(
        label="Company name", max_length=200, help_text="The customer company as your staff and the customer know it."
    )
    account_name = forms.CharField(
        label="Account name",
        max_length=100,
        strip=False,  # the account-name rule refuses surrounding spaces and line breaks itself
        help_text="5-20 characters: lowercase latin letters, digits and hyphens, starting with a letter.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    account_email = forms.CharField(
        label="Account email",
        max_length=254,
        help_text="Unique at the provider; compared case-insensitively.",
        widget=forms.EmailInput(),
    )
    password = forms.CharField(
        label="Provider password",
        required=False,
        max_length=4096,
        strip=False,
        help_text="Leave empty to generate a strong one. At least 12 characters; Voximplant also needs an "
        "uppercase letter, a lowercase letter, a digit and a special character.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    @property
    def password_retype(self) -> bool:
        """A password was typed but the form came back for other errors: the page never sends
        a password back, so it asks for it again (everything else stays as typed)."""
        return self.is_bound and bool(self.errors) and bool(self.data.get("password")) and "password" not in self.errors


class TenantCreateForm(_OperationKeyMixin, AccountFieldsMixin):
    connection = forms.ModelChoiceField(
        label="Provider connection",
        queryset=ProviderConnection.objects.none(),
        to_field_name="uuid",
        empty_label=None,
        help_text="The reseller account at the provider that will own the new account.",
    )
    voiceit_type = forms.ChoiceField(
        label="VoiceIt account type",
        required=False,
        choices=[("", "— not VoiceIt —"), *Tenant.VoiceItType.choices],
        help_text="VoiceIt only: managed (the reseller pays) or unmanaged (the customer pays).",
    )
    contact_name = forms.CharField(label="Contact person", max_length=200, required=False)
    contact_email = forms.CharField(label="Contact email", max_length=254, required=False, widget=forms.EmailInput())
    plan = forms.CharField(label="Plan", max_length=100, required=False)
    low_balance_threshold = forms.CharField(
        label="Low-balance alert below",
        max_length=20,
        required=False,
        help_text="An amount in the tenant's currency, like 5 or 12.50.",
    )
    notes = forms.CharField(label="Notes", required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    invite_owner_email = forms.CharField(
        label="Invite the customer's owner",
        max_length=254,
        required=False,
        widget=forms.EmailInput(),
        help_text="Optional. Creates their portal login and emails them a link to choose a password.",
    )

    field_order = [
        "connection",
        "voiceit_type",
        "company_name",
        "contact_name",
        "contact_email",
        "account_name",
        "account_email",
        "password",
        "plan",
        "low_balance_threshold",
        "notes",
        "invite_owner_email",
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["connection"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = ProviderConnection.objects.filter(is_active=True).order_by("name")

    def clean_low_balance_threshold(self) -> Decimal | None:
        return typed_threshold_field(self)


class TenantCloneForm(_OperationKeyMixin, AccountFieldsMixin):
    pass


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
        help_text="Required. Recorded in the audit trail; customers see it on their banner.",
    )


class CloseForm(ReasonForm):
    confirm = forms.CharField(label="Type the account name to confirm", max_length=100)

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tenant = tenant

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        expected = self.tenant.account_name or self.tenant.company_name
        if value != expected:
            raise forms.ValidationError(f"Type {expected} exactly to confirm.")
        return value


class ImportForm(forms.Form):
    company_name = forms.CharField(label="Company name", max_length=200, required=False)


class TenantEditForm(forms.Form):
    """Staff edit. Portal fields change at once; the account email and password go to the
    provider; a field the provider cannot change is shown disabled with the reason."""

    company_name = forms.CharField(label="Company name", max_length=200)
    contact_name = forms.CharField(label="Contact person", max_length=200, required=False)
    contact_email = forms.CharField(label="Contact email", max_length=254, required=False, widget=forms.EmailInput())
    plan = forms.CharField(label="Plan", max_length=100, required=False)
    notes = forms.CharField(label="Notes", required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3}))
    account_name = forms.CharField(label="Account name", max_length=100, required=False, strip=False)
    account_email = forms.CharField(
        label="Account email",
        max_length=254,
        required=False,
        widget=forms.EmailInput(),
        help_text="Changed at the provider; unique there, compared case-insensitively.",
    )
    password = forms.CharField(
        label="New provider password",
        required=False,
        max_length=4096,
        strip=False,
        help_text="Leave empty to keep the current one. Same rules as at creation.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    low_balance_threshold = forms.CharField(
        label="Low-balance alert below",
        max_length=20,
        required=False,
        help_text="An amount in the tenant's currency, like 5 or 12.50; empty turns the alert off.",
    )

    def __init__(self, *args: Any, tenant: Tenant, not_editable: dict[str, str | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.not_editable = {name: reason for name, reason in not_editable.items() if reason}
        for name, reason in self.not_editable.items():
            field = self.fields[name]
            field.disabled = True
            field.help_text = f"Cannot be changed here: {reason}"

    def clean_low_balance_threshold(self) -> Decimal | None:
        return typed_threshold_field(self)


class RotateForm(forms.Form):
    delivery = forms.ChoiceField(
        label="How the customer gets the new credentials",
        choices=[
            ("show", "Show them to me once, on the next page"),
            ("email", "Email them to the tenant's owners (not shown here)"),
        ],
        widget=forms.RadioSelect,
        initial="show",
    )

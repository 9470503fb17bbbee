"""Two-factor sign-in (TOTP through django-otp) and re-authentication before sensitive actions.

Who needs the second factor: every staff role, every user who enrolled a device, and every member
of a team whose owner turned on `Tenant.require_two_factor`. After the password such a session is
signed in but not verified: TwoFactorMiddleware lets it reach only the verify/enrol/logout pages,
static files and the health checks until a code is given. Codes are checked against the lockout
(django-axes): a wrong code counts as a failed login for that username and address, and a locked
account is refused even the right code. The lockout's counter is reset only once the whole
sign-in (password and, where needed, code) succeeded; otherwise knowing the password would reset
it between guesses.

Re-authentication (password and code within TWO_FACTOR_REAUTH_SECONDS) guards moving money above
the approval threshold, approving transfers, creating API tokens, role changes and provider
connection changes: views call `recent_auth_response(request)` or use `@require_recent_auth`.

Secrets (TOTP keys, recovery codes) are never logged and never written to the audit log.
See docs/security.md, "Two-factor sign-in".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from io import BytesIO
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache

from portal.audit import audit_log
from portal.roles import Role, is_staff_role, role_of

REAUTH_SESSION_KEY = "two_factor_reauth_at"
RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"

# Paths an unverified session may still open (prefixes). Everything else waits for the code.
_OPEN_PREFIXES = ("/accounts/two-factor/verify/", "/accounts/two-factor/enrol/", "/accounts/logout/", "/healthz")
# The CSP report endpoint too: a browser mid-sign-in still reports what the policy blocked.
# The language switcher too: the sign-in pages themselves offer it.
_OPEN_EXACT = ("/metrics", "/accounts/login/", "/csp-report/", "/i18n/setlang/")
# Admin pages that change roles (users, groups) or the provider connection: re-authenticate first.
_REAUTH_ADMIN_PREFIXES = ("/admin/auth/user/", "/admin/auth/group/", "/admin/tenants/providerconnection/")


# --- who needs it ---------------------------------------------------------------------------


def has_device(user: Any) -> bool:
    from django_otp import user_has_device

    return bool(user_has_device(user, confirmed=True))


def team_requires(user: Any) -> bool:
    """The owner of the user's team asked for a second factor. Read through the user's
    membership relation (the tenants layer sits above this one, so it is not imported)."""
    # A user without a membership raises RelatedObjectDoesNotExist, an AttributeError.
    membership = getattr(user, "membership", None)
    return bool(membership is not None and getattr(membership.tenant, "require_two_factor", False))


def needs_two_factor(user: Any) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    if is_staff_role(user) or user.is_superuser:
        return True
    return has_device(user) or team_requires(user)


def is_verified(request: HttpRequest) -> bool:
    check = getattr(request.user, "is_verified", None)
    return bool(check and check())


# --- the lockout ------------------------------------------------------------------------------


def _credentials(user: Any) -> dict[str, str]:
    return {"username": user.get_username()}


def is_locked(request: HttpRequest, user: Any) -> bool:
    from axes.handlers.proxy import AxesProxyHandler

    return bool(AxesProxyHandler.is_locked(request, credentials=_credentials(user)))


def lockout_response(request: HttpRequest, user: Any) -> HttpResponse:
    from axes.helpers import get_lockout_response

    auth_logout(request)
    return get_lockout_response(request, credentials=_credentials(user))  # type: ignore[no-any-return]


def count_failure(request: HttpRequest, user: Any, *, step: str) -> None:
    """A wrong code is a failed login for the lockout (and the sign-in audit) like a wrong password."""
    audit_log(actor=user, action="portal.two_factor.failed", data={"step": step}, request=request)
    user_login_failed.send(sender=__name__, credentials=_credentials(user), request=request)


def reset_failures(request: HttpRequest, user: Any) -> None:
    from axes.handlers.proxy import AxesProxyHandler

    AxesProxyHandler.update_request(request)
    handler = AxesProxyHandler.get_implementation()
    reset = getattr(handler, "reset_user_attempts", None)
    if reset is not None:
        reset(request, _credentials(user))


def on_user_logged_in(sender: object, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Reset the lockout's counter after a password sign-in only for users who need no code;
    the others get it reset once the code is right."""
    if request is not None and not needs_two_factor(user):
        reset_failures(request, user)


# --- devices ----------------------------------------------------------------------------------


def pending_totp_device(user: Any) -> Any:
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def qr_svg(data: str) -> str:
    import qrcode
    import qrcode.image.svg

    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    out = BytesIO()
    image.save(out)
    text = out.getvalue().decode()
    # Inline in the page: drop the XML declaration.
    return text[text.index("<svg") :]


def new_recovery_codes(user: Any) -> list[str]:
    """Replace the user's recovery codes with RECOVERY_CODE_COUNT fresh single-use ones."""
    from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    return codes


def _clean(code: str) -> str:
    return "".join(code.split())[:32]


def verify_code(user: Any, code: str) -> tuple[Any, str] | None:
    """The confirmed device that accepts the code and its kind ("totp" or "recovery"), or None."""
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    code = _clean(code)
    if not code:
        return None
    with transaction.atomic():
        if code.isdigit():
            for device in TOTPDevice.objects.filter(user=user, confirmed=True).select_for_update():
                if device.verify_token(code):
                    return device, "totp"
        for static in StaticDevice.objects.filter(user=user, confirmed=True).select_for_update():
            if static.verify_token(code):
                return static, "recovery"
    return None


def demo_authenticator(user: Any) -> tuple[str, str]:
    """For `make run`'s demo staff only: a confirmed TOTP device (a random secret made the first
    time), returned as its base32 secret and otpauth:// URI for an authenticator app."""
    from base64 import b32encode

    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    return b32encode(device.bin_key).decode().rstrip("="), device.config_url


def reset_devices(*, actor: Any, user: Any, request: HttpRequest | None = None) -> None:
    """A reseller admin removes a staff member's second factor; they enrol again at next sign-in."""
    from django_otp import devices_for_user

    if role_of(actor) != Role.RESELLER_ADMIN:
        raise PermissionDenied
    with transaction.atomic():
        removed = 0
        for device in list(devices_for_user(user, confirmed=None)):
            device.delete()
            removed += 1
        audit_log(
            actor=actor,
            action="portal.two_factor.reset",
            data={"user": user.get_username(), "devices_removed": removed},
            request=request,
        )


# --- re-authentication ------------------------------------------------------------------------


def reauth_seconds() -> int:
    return int(getattr(settings, "TWO_FACTOR_REAUTH_SECONDS", 300))


def has_recent_auth(request: HttpRequest) -> bool:
    stamp = request.session.get(REAUTH_SESSION_KEY)
    return isinstance(stamp, (int, float)) and 0 <= time.time() - stamp <= reauth_seconds()


def _safe(request: HttpRequest, url: str | None) -> str | None:
    # Only a path (redirect() would read any other word as a view name and fail).
    if (
        url
        and url.startswith("/")
        and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    ):
        return url
    return None


def recent_auth_response(request: HttpRequest, *, back: str | None = None) -> HttpResponse | None:
    """None when the session re-authenticated recently; otherwise the answer that sends the user
    to re-authenticate (a redirect for pages, a JSON 403 under /api/), then back to `back` (or
    this page for a GET, the page that showed the form for a POST)."""
    if has_recent_auth(request):
        return None
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "error": {
                    "code": "reauthentication_required",
                    "message": "Confirm your password and a code at /accounts/two-factor/reauth/ first.",
                }
            },
            status=403,
        )
    if back is not None:
        back = _safe(request, back) or reverse("home")
    elif request.method in ("GET", "HEAD"):
        back = request.get_full_path()
    else:
        # A form's POST cannot be replayed: come back to the page that showed the form.
        back = _safe(request, request.headers.get("Referer")) or reverse("home")
    return redirect(f"{reverse('two_factor_reauth')}?{urlencode({'next': back})}")


V = TypeVar("V", bound=Callable[..., HttpResponseBase])


def require_recent_auth(view: V) -> V:
    """View decorator: password and code within TWO_FACTOR_REAUTH_SECONDS, or off to the reauth page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated:
            refused = recent_auth_response(request)
            if refused is not None:
                return refused
        return view(request, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --- the middleware ---------------------------------------------------------------------------


class TwoFactorMiddleware:
    """Until verified, a session that needs a second factor reaches only the sign-in pages."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = self._refusal(request)
        return refused if refused is not None else self.get_response(request)

    def _refusal(self, request: HttpRequest) -> HttpResponse | None:
        path = request.path
        if path.startswith("/" + settings.STATIC_URL.lstrip("/")) or path in _OPEN_EXACT:
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if path.startswith("/api/") and request.headers.get("Authorization", "").lower().startswith("bearer "):
            return None  # token authentication: DRF checks the token, sessions play no part
        # A verified session (the device is already on the request) costs no query here.
        if is_verified(request) or not needs_two_factor(user):
            if path.startswith(_REAUTH_ADMIN_PREFIXES):
                return recent_auth_response(request)
            return None
        if path.startswith(_OPEN_PREFIXES):
            return None
        if path.startswith("/api/"):
            return JsonResponse(
                {"error": {"code": "two_factor_required", "message": "Finish signing in with your code first."}},
                status=401,
            )
        target = "two_factor_verify" if has_device(user) else "two_factor_enrol"
        return redirect(f"{reverse(target)}?{urlencode({'next': request.get_full_path()})}")


# --- views ------------------------------------------------------------------------------------


def _next(request: HttpRequest) -> str:
    return _safe(request, request.POST.get("next") or request.GET.get("next")) or reverse("home")


def _complete(request: HttpRequest, device: Any) -> None:
    from django_otp import login as otp_login

    otp_login(request, device)
    reset_failures(request, request.user)


@never_cache
@login_required
def verify(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not has_device(user):
        return redirect(f"{reverse('two_factor_enrol')}?{urlencode({'next': _next(request)})}")
    if is_verified(request):
        return redirect(_next(request))
    error = ""
    if request.method == "POST":
        if is_locked(request, user):
            return lockout_response(request, user)
        found = verify_code(user, request.POST.get("code", ""))
        if found is None:
            count_failure(request, user, step="sign_in")
            if getattr(request, "axes_locked_out", False) or is_locked(request, user):
                return lockout_response(request, user)
            error = "That code is not right. Enter the 6 digits your app shows now, or a recovery code."
        else:
            device, kind = found
            with transaction.atomic():
                _complete(request, device)
                audit_log(actor=user, action="portal.two_factor.verified", data={"method": kind}, request=request)
                if kind == "recovery":
                    left = device.token_set.count()
                    audit_log(
                        actor=user, action="portal.two_factor.recovery_used", data={"left": left}, request=request
                    )
            return redirect(_next(request))
    return render(
        request, "twofactor/verify.html", {"error": error, "next": _next(request)}, status=400 if error else 200
    )


@never_cache
@login_required
def enrol(request: HttpRequest) -> HttpResponse:
    user = request.user
    if has_device(user):
        if not is_verified(request):
            return redirect(f"{reverse('two_factor_verify')}?{urlencode({'next': _next(request)})}")
        return render(request, "twofactor/status.html", {"enrolled": True, "required": needs_two_factor(user)})
    device = pending_totp_device(user)
    error = ""
    if request.method == "POST":
        code = _clean(request.POST.get("code", ""))
        if code.isdigit() and device.verify_token(code):
            with transaction.atomic():
                device.confirmed = True
                device.save(update_fields=["confirmed"])
                codes = new_recovery_codes(user)
                _complete(request, device)
                audit_log(
                    actor=user,
                    action="portal.two_factor.enrolled",
                    data={"device": TOTP_DEVICE_NAME, "recovery_codes": RECOVERY_CODE_COUNT},
                    request=request,
                )
            return render(request, "twofactor/recovery_codes.html", {"codes": codes, "next": _next(request)})
        audit_log(actor=user, action="portal.two_factor.enrol_failed", data={}, request=request)
        error = "That code did not match. Scan the code again or check your phone's clock, then enter the new code."
    context = {
        "qr_svg": qr_svg(device.config_url),
        "secret": _base32(device.bin_key),
        "error": error,
        "next": _next(request),
        "required": needs_two_factor(user),
    }
    return render(request, "twofactor/enrol.html", context, status=400 if error else 200)


def _base32(key: bytes) -> str:
    from base64 import b32encode

    raw = b32encode(key).decode().rstrip("=")
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


@never_cache
@login_required
def reauth(request: HttpRequest) -> HttpResponse:
    """Password and code (a code only for users with a device) again, then back to the page."""
    user = request.user
    with_code = has_device(user)
    error = ""
    if request.method == "POST":
        if is_locked(request, user):
            return lockout_response(request, user)
        checked = authenticate(request, username=user.get_username(), password=request.POST.get("password", ""))
        if checked is None or checked.pk != user.pk:
            error = "The password or the code is not right."
        elif with_code and verify_code(user, request.POST.get("code", "")) is None:
            count_failure(request, user, step="reauth")
            error = "The password or the code is not right."
        if error:
            if getattr(request, "axes_locked_out", False) or is_locked(request, user):
                return lockout_response(request, user)
        else:
            request.session[REAUTH_SESSION_KEY] = time.time()
            audit_log(actor=user, action="portal.two_factor.reauthenticated", data={}, request=request)
            return redirect(_next(request))
    context = {"error": error, "with_code": with_code, "next": _next(request), "minutes": reauth_seconds() // 60}
    return render(request, "twofactor/reauth.html", context, status=400 if error else 200)


def _require_admin(request: HttpRequest) -> None:
    if not request.user.is_authenticated:
        raise Http404
    if role_of(request.user) != Role.RESELLER_ADMIN:
        raise PermissionDenied


@never_cache
@login_required
def staff_list(request: HttpRequest) -> HttpResponse:
    """Reseller admins see who of the staff has a second factor and can reset it."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    _require_admin(request)
    staff_names = [r.value for r in Role if r.value.startswith("reseller_")]
    users = get_user_model().objects.filter(groups__name__in=staff_names).distinct().order_by("username")
    enrolled = set(TOTPDevice.objects.filter(confirmed=True).values_list("user_id", flat=True))
    rows = [{"user": u, "enrolled": u.pk in enrolled, "role": role_of(u)} for u in users]
    return render(request, "twofactor/staff.html", {"rows": rows})


@never_cache
@login_required
def staff_reset(request: HttpRequest, user_id: int) -> HttpResponseBase:
    from django.contrib import messages

    _require_admin(request)  # first: anyone else gets 403 whatever the method
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    refused = recent_auth_response(request, back=reverse("two_factor_staff"))
    if refused is not None:
        return refused
    target = get_user_model().objects.filter(pk=user_id).first()
    if target is None or not is_staff_role(target):
        raise Http404
    reset_devices(actor=request.user, user=target, request=request)
    messages.success(request, f"{target.get_username()} sets up a new authenticator at their next sign-in.")
    return redirect("two_factor_staff")

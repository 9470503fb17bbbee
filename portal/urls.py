from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from portal import audit_views, csp, twofactor, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/live", views.healthz_live, name="healthz_live"),
    path("healthz/ready", views.healthz_ready, name="healthz_ready"),
    path("metrics", views.metrics, name="metrics"),
    path("csp-report/", csp.csp_report, name="csp_report"),  # the browser's policy-violation reports
    # The language switcher posts here (Django's set_language: a cookie, then back to `next`;
    # a signed-in customer's choice is also kept on the membership, customers/language.py).
    path("i18n/", include("customers.language")),
    path("console/", include("console.urls")),
    path("console/audit/", audit_views.audit_list, name="audit"),
    path("console/jobs/<uuid:job_uuid>/", views.job_detail, name="job"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/two-factor/verify/", twofactor.verify, name="two_factor_verify"),
    path("accounts/two-factor/enrol/", twofactor.enrol, name="two_factor_enrol"),
    path("accounts/two-factor/reauth/", twofactor.reauth, name="two_factor_reauth"),
    path("console/two-factor/", twofactor.staff_list, name="two_factor_staff"),
    path("console/two-factor/<int:user_id>/reset/", twofactor.staff_reset, name="two_factor_staff_reset"),
    path("accounts/password/change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path(
        "accounts/password/reset/",
        auth_views.PasswordResetView.as_view(html_email_template_name="emails/password_reset.html"),
        name="password_reset",
    ),
    path("accounts/password/reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("admin/", admin.site.urls),
]

# Apps mount themselves here as they are built (see portal/app_urls.py).
from portal.app_urls import app_urlpatterns  # noqa: E402

urlpatterns += app_urlpatterns

handler403 = "portal.views.error_403"
handler404 = "portal.views.error_404"
handler500 = "portal.views.error_500"

"""URL includes of the apps, each in its own line so parallel work does not collide."""

from django.urls import include, path

app_urlpatterns = [
    path("console/tenants/", include("tenants.urls")),
    path("console/billing/", include("billing.urls")),
    path("console/reselling/", include("reselling.urls")),
    path("me/", include("customers.urls")),
    path("api/", include("api.urls")),
    path("console/api-tokens/", include("api.console_views")),
    path("me/api-tokens/", include("api.customer_token_views")),
    # The provider's account callbacks: public, each callback authenticated by its hash.
    path("hooks/", include("billing.webhooks")),
]

__all__ = ["app_urlpatterns", "include", "path"]

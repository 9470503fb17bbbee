from django.urls import path

from billing import pbx_user_pages, views

app_name = "billing"

urlpatterns = [
    path("", views.transfer_list, name="transfers"),
    path("transfers/export/", views.transfer_export, name="transfers_export"),
    path("transfers/<uuid:transfer_uuid>/", views.transfer_detail, name="transfer_detail"),
    path("transfers/<uuid:transfer_uuid>/approve/", views.transfer_approve, name="transfer_approve"),
    path("transfers/<uuid:transfer_uuid>/reject/", views.transfer_reject, name="transfer_reject"),
    path("transfers/<uuid:transfer_uuid>/resolve/", views.transfer_resolve, name="transfer_resolve"),
    path("tenants/<uuid:tenant_uuid>/", views.tenant_billing, name="tenant"),
    path("tenants/<uuid:tenant_uuid>/transfer/", views.tenant_transfer, name="tenant_transfer"),
    path("tenants/<uuid:tenant_uuid>/threshold/", views.tenant_threshold, name="tenant_threshold"),
    path("tenants/<uuid:tenant_uuid>/statement/", views.tenant_statement, name="statement"),
    path("tenants/<uuid:tenant_uuid>/users/", pbx_user_pages.staff_users, name="tenant_users"),
    path(
        "tenants/<uuid:tenant_uuid>/users/read/",
        pbx_user_pages.staff_users_action,
        {"action": "read"},
        name="tenant_users_read",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/users/create/",
        pbx_user_pages.staff_users_action,
        {"action": "create"},
        name="tenant_users_create",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/users/<int:user_id>/update/",
        pbx_user_pages.staff_users_action,
        {"action": "update"},
        name="tenant_user_update",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/users/<int:user_id>/delete/",
        pbx_user_pages.staff_users_action,
        {"action": "delete"},
        name="tenant_user_delete",
    ),
    path(
        "tenants/<uuid:tenant_uuid>/users/<int:user_id>/transfer/",
        pbx_user_pages.staff_users_action,
        {"action": "transfer"},
        name="tenant_user_transfer",
    ),
    path("bulk/", views.bulk, name="bulk"),
    path("bulk/jobs/<uuid:job_uuid>/", views.bulk_job, name="bulk_job"),
    path("sync/", views.sync_runs, name="sync_runs"),
    path("sync/start/", views.sync_start, name="sync_start"),
    path("sync/export/", views.sync_runs_export, name="sync_runs_export"),
    path("sync/<uuid:run_uuid>/", views.sync_run, name="sync_run"),
    path("parent/refresh/", views.parent_refresh, name="parent_refresh"),
    path("drift/", views.drift_list, name="drift"),
    path("drift/export/", views.drift_export, name="drift_export"),
    path("drift/<uuid:drift_uuid>/resolve/", views.drift_resolve, name="drift_resolve"),
]

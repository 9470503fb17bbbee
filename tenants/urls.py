from django.urls import path

from tenants import capability_views, plan_views, views

app_name = "tenants"

urlpatterns = [
    path("", views.tenant_list, name="list"),
    path("new/", views.tenant_create, name="create"),
    path("export/", views.tenant_export, name="export"),
    path("bulk/", views.bulk, name="bulk"),
    path("bulk/import/", views.bulk_import, name="bulk_import"),
    path("bulk/jobs/<uuid:job_uuid>/", views.bulk_job, name="bulk_job"),
    path("import/", views.import_list, name="import"),
    path("import/adopt/", views.import_one, name="import_one"),
    path("import/scan/", views.import_scan, name="import_scan"),
    path(
        "connections/<uuid:connection_uuid>/capabilities/check/",
        capability_views.capabilities_check,
        name="capabilities_check",
    ),
    path("<uuid:tenant_uuid>/", views.tenant_detail, name="detail"),
    path("<uuid:tenant_uuid>/clone/", views.tenant_clone, name="clone"),
    path("<uuid:tenant_uuid>/freeze/", views.tenant_freeze, name="freeze"),
    path("<uuid:tenant_uuid>/unfreeze/", views.tenant_unfreeze, name="unfreeze"),
    path("<uuid:tenant_uuid>/close/", views.tenant_close, name="close"),
    path("<uuid:tenant_uuid>/edit/", views.tenant_edit, name="edit"),
    path("<uuid:tenant_uuid>/activate/", views.tenant_activate, name="activate"),
    path("<uuid:tenant_uuid>/rotate/", views.tenant_rotate, name="rotate"),
    path("<uuid:tenant_uuid>/plans/refresh/", plan_views.tenant_plans_refresh, name="plans_refresh"),
    path("<uuid:tenant_uuid>/plans/change/", plan_views.tenant_change_plan, name="change_plan"),
    path("<uuid:tenant_uuid>/rotations/<uuid:operation_uuid>/", views.tenant_rotation, name="rotation"),
    path("<uuid:tenant_uuid>/operations/<uuid:operation_uuid>/retry/", views.operation_retry, name="operation_retry"),
    path(
        "<uuid:tenant_uuid>/operations/<uuid:operation_uuid>/abandon/",
        views.operation_give_up,
        name="operation_give_up",
    ),
]

from django.urls import path

from customers import invoices, pbx_users, views

app_name = "customer"
urlpatterns = [
    path("", views.home, name="home"),
    path("refresh/", views.refresh, name="refresh"),
    path("alerts/", views.alerts, name="alerts"),
    path("statement/", views.statement, name="statement"),
    path("team/", views.team, name="team"),
    path("team/invite/", views.team_invite, name="team_invite"),
    path("team/two-factor/", views.team_two_factor, name="team_two_factor"),
    path("team/<int:member_id>/remove/", views.team_remove, name="team_remove"),
    path("team/<int:member_id>/resend/", views.team_resend, name="team_resend"),
    path("profile/", views.profile, name="profile"),
    path("users/", pbx_users.users, name="users"),
    path("users/read/", pbx_users.users_action, {"action": "read"}, name="users_read"),
    path("users/create/", pbx_users.users_action, {"action": "create"}, name="users_create"),
    path("users/<int:user_id>/update/", pbx_users.users_action, {"action": "update"}, name="user_update"),
    path("users/<int:user_id>/delete/", pbx_users.users_action, {"action": "delete"}, name="user_delete"),
    path("users/<int:user_id>/transfer/", pbx_users.users_action, {"action": "transfer"}, name="user_transfer"),
    path("invoices/", invoices.invoice_list, name="invoices"),
    path("invoices/<uuid:invoice_uuid>/", invoices.invoice_detail, name="invoice"),
    path("invoices/<uuid:invoice_uuid>/download.<str:fmt>", invoices.invoice_download, name="invoice_download"),
]

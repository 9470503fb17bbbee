from django.urls import path

from customers import views

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
]

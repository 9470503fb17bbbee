from django.urls import path

from console import callbacks, views

app_name = "console"
urlpatterns = [
    path("", views.console_home, name="home"),
    path("schedule/", views.schedule_page, name="schedule"),
    path("callbacks/", callbacks.callbacks_page, name="callbacks"),
]

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        # Imported here: these modules read settings and models, which exist once apps are ready.
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from portal.celery import ensure_broker_folders
        from portal.errortracking import init_error_tracking
        from portal.signins import record_locked_out, record_login_failed
        from portal.twofactor import on_user_logged_in

        init_error_tracking()
        ensure_broker_folders()
        user_login_failed.connect(record_login_failed, dispatch_uid="portal.audit.login_failed")
        user_locked_out.connect(record_locked_out, dispatch_uid="portal.audit.locked_out")
        user_logged_in.connect(on_user_logged_in, dispatch_uid="portal.twofactor.logged_in")

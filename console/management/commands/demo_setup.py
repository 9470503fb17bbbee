"""`make run`'s set-up: a sandbox with money and children, provider connections, demo logins.

Idempotent: a second run keeps every row and only fills in what is missing, except that the
demo connections follow the sandbox: a run with another `SANDBOX_PORT` points them at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from billing.models import SyncRun
from billing.services import sync_start
from portal.audit import audit_log
from portal.devstack import sandbox_url
from portal.roles import assign_role
from portal.twofactor import demo_authenticator
from providers.base import ListingNeedsFilter
from sandbox.init import init_sandbox
from sandbox.seed import seed_children
from sandbox.server import start_in_thread
from sandbox.store import Store
from tenants.capability_probe import connection_probe_later
from tenants.connections import client_for
from tenants.models import Membership, ProviderConnection, Tenant
from tenants.services import tenant_import

DEMO_PASSWORD = "demo-password-2024!"
STAFF = [("admin", "reseller_admin"), ("billing", "reseller_billing"), ("support", "reseller_support")]
CUSTOMERS = [("owner", "customer_owner", "Acme Telecom"), ("viewer", "customer_viewer", "Globex Calls")]
# The connections this command creates, known by name; any other connection is staff's own.
VOX_CONNECTION = "Voximplant (sandbox)"
VOICEIT_CONNECTION = "VoiceIt (sandbox)"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Command(BaseCommand):
    help = "Initialise and seed the local sandbox, create provider connections and demo logins."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--children", type=int, default=200, help="child accounts to seed in a new sandbox")

    def handle(self, *args: Any, **options: Any) -> None:

        sandbox_dir = Path(settings.PROVIDER_CREDENTIALS_DIR)
        db_path = sandbox_dir / "sandbox.sqlite3"
        if not (sandbox_dir / "credentials.json").exists():
            sandbox_dir.mkdir(parents=True, exist_ok=True)
            init_sandbox(str(db_path), str(sandbox_dir))
            seed_children(str(db_path), options["children"])
            self.stdout.write(f"Sandbox initialised in {sandbox_dir} with {options['children']} child accounts.")
        else:
            self.stdout.write(f"Sandbox already initialised in {sandbox_dir}; keeping its data.")

        vox, voiceit = self._connections(sandbox_dir)
        self._staff()
        self._customers(vox, db_path)
        self._first_sync(vox)
        self._print_summary()

    def _first_sync(self, vox: Any) -> None:
        """Queue one balance sync, so the console has balances and import candidates as soon as
        the worker starts; the nightly one follows on beat."""

        if not SyncRun.objects.filter(connection=vox).exists():
            sync_start(actor=User.objects.get(username="admin"), connection=vox)
            self.stdout.write("Queued a first balance sync; the worker runs it once the stack is up.")

    def _connections(self, sandbox_dir: Path) -> tuple[Any, Any]:
        import json

        account_id = int(
            json.loads((sandbox_dir / "credentials.json").read_text()).get("account_id")
            or json.loads((sandbox_dir / "credentials.json").read_text())["result"]["account_id"]
        )
        base_url = sandbox_url()
        vox, _ = ProviderConnection.objects.get_or_create(
            name=VOX_CONNECTION,
            defaults={
                "kind": "voximplant",
                "base_url": base_url,
                "credentials_path": settings.VOXIMPLANT_CREDENTIALS_FILE,
                "parent_api_key_path": settings.VOXIMPLANT_PARENT_API_KEY_FILE,
                "parent_account_id": account_id,
                "currency": "USD",
            },
        )
        voiceit, _ = ProviderConnection.objects.get_or_create(
            name=VOICEIT_CONNECTION,
            defaults={
                "kind": "voiceit",
                "base_url": base_url,
                "voiceit_credentials_path": settings.VOICEIT_CREDENTIALS_FILE,
                "currency": "USD",
            },
        )
        for conn in (vox, voiceit):
            self._follow_sandbox(conn, base_url)
            if conn.capabilities_checked_at is None:
                # Which methods the sandbox answers: the worker asks once the stack is up.
                connection_probe_later(conn)
        return vox, voiceit

    def _follow_sandbox(self, conn: ProviderConnection, base_url: str) -> None:
        """Point a demo connection at the sandbox `make run` starts now (an earlier run may have
        used another `SANDBOX_PORT`). One that staff pointed away from a local sandbox is kept."""

        old = conn.base_url
        if old.rstrip("/") == base_url:
            return
        if urlsplit(old).hostname not in LOCAL_HOSTS:
            self.stdout.write(f"Kept connection {conn.name!r} at {old}: it no longer points at a local sandbox.")
            return
        with transaction.atomic():
            ProviderConnection.objects.filter(pk=conn.pk).update(base_url=base_url)
            audit_log(
                actor="demo_setup",
                action="tenants.connection.base_url_changed",
                data={"connection": conn.name, "from": old, "to": base_url},
            )
        conn.base_url = base_url
        self.stdout.write(f"Connection {conn.name!r} now points at the sandbox at {base_url} (was {old}).")

    def _user(self, username: str, role: str, **extra: Any) -> User:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(
                username=username, email=f"{username}@demo.example", password=DEMO_PASSWORD, **extra
            )
            assign_role(user, role)
        return user

    def _staff(self) -> None:
        for username, role in STAFF:
            self._user(username, role, is_staff=(role == "reseller_admin"), is_superuser=(role == "reseller_admin"))

    def _customers(self, vox: Any, db_path: Path) -> None:

        missing = [c for c in CUSTOMERS if not Tenant.objects.filter(company_name=c[2]).exists()]
        if missing:
            # The demo tenants adopt two seeded child accounts, through the real import service
            # against a sandbox started just for this.
            running = start_in_thread(str(db_path))
            try:
                vox.base_url = running.base_url
                admin = User.objects.get(username="admin")
                taken = set(Tenant.objects.filter(connection=vox).values_list("provider_account_id", flat=True))
                client = client_for(vox)
                try:
                    first_page = _first_children(client, db_path)
                finally:
                    client.close()
                candidates = [a.account_id for a in first_page if a.account_id not in taken]
                for (_, _, company), account_id in zip(missing, candidates, strict=False):
                    tenant_import(actor=admin, connection=vox, provider_account_id=account_id, company_name=company)
            finally:
                running.shutdown()
                vox.refresh_from_db()
        for username, role, company in CUSTOMERS:
            tenant = Tenant.objects.filter(company_name=company).first()
            if tenant is None:
                continue
            user = self._user(username, role)
            with transaction.atomic():
                Membership.objects.get_or_create(user=user, defaults={"tenant": tenant})

    def _print_summary(self) -> None:
        self.stdout.write(self.style.SUCCESS(f"\nPortal: {settings.SITE_URL}/"))
        self.stdout.write(f"Logins (password {DEMO_PASSWORD!r} for all):")
        for username, role in STAFF:
            # Staff sign in with a code too: add the secret (or the URI) to an authenticator app.
            secret, uri = demo_authenticator(User.objects.get(username=username))
            self.stdout.write(f"  {username:<8} {role}  authenticator secret {secret}  {uri}")
        for username, role, company in CUSTOMERS:
            self.stdout.write(f"  {username:<8} {role} of {company}")


def _first_children(client: Any, db_path: Path) -> list[Any]:
    """The first 50 child accounts: the unfiltered listing where the provider allows it; where
    it lists children only by id, name or email, read by the ids the sandbox holds."""
    try:
        return list(next(iter(client.iter_account_pages(page_size=50)), []))
    except ListingNeedsFilter:
        store = Store(str(db_path))
        try:
            with store.connection() as conn:
                ids = [
                    int(row[0])
                    for row in conn.execute(
                        "SELECT account_id FROM accounts WHERE parent_id IS NOT NULL ORDER BY account_id LIMIT 50"
                    )
                ]
        finally:
            store.close()
        return list(client.get_accounts(ids)) if ids else []

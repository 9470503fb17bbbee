"""Re-encrypt every stored provider secret with the newest key.

Key rotation: put a new key first in FIELD_ENCRYPTION_KEYS (keep the old one after it), deploy,
run this command, then drop the old key. Values stay readable throughout (MultiFernet)."""

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Re-encrypt tenant secrets (child api keys, VoiceIt tokens) with the newest FIELD_ENCRYPTION_KEYS key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args: Any, **options: Any) -> None:
        from tenants.services import tenant_secrets_rotate

        count = tenant_secrets_rotate(batch_size=options["batch_size"])
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} stored secret value(s) with the newest key."))

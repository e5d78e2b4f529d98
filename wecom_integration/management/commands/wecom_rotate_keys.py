"""Re-encrypt every stored secret under the first key of WECOM_FIELD_KEYS (after adding a new key first)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from ...models import WeComConfig


class Command(BaseCommand):
    help = "Re-encrypt stored WeCom secrets under the first key of WECOM_FIELD_KEYS."

    def handle(self, *args, **options):
        count = 0
        with transaction.atomic():
            # Reading decrypts with any key; saving encrypts with the first.
            for config in WeComConfig.objects.select_for_update():
                config.save(update_fields=list(WeComConfig.WRITE_ONLY_FIELDS))
                count += 1
        self.stdout.write(f"Re-encrypted the secrets of {count} configuration(s).")

"""Re-encrypt every stored secret, and members' personal data, under the first key of WECOM_FIELD_KEYS
(after adding a new key first)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from wecom_integration.models import WeComConfig, WeComUser

PERSONAL_FIELDS = ("mobile", "email", "avatar")
BATCH = 2000


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
        # Members' personal data, in batches (each its own transaction: the mirror can be large).
        members = 0
        last = 0
        while True:
            batch = list(WeComUser.objects.filter(pk__gt=last).order_by("pk").only("pk", *PERSONAL_FIELDS)[:BATCH])
            if not batch:
                break
            WeComUser.objects.bulk_update(batch, PERSONAL_FIELDS)
            members += len(batch)
            last = batch[-1].pk
        self.stdout.write(f"Re-encrypted the personal data of {members} member(s).")

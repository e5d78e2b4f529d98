# CallbackEvent.tenant loses its own index: uniq_callback_event (tenant, kind, dedupe_key) starts with the
# tenant and serves the same lookups, and each callback's INSERT has one index fewer to update.

from django.conf import settings
from django.db import migrations

from wecom_integration.migration_ops import drop_own_index


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        migrations.swappable_dependency(settings.WECOM_TENANT_MODEL),
        ("wecom_integration", "0004_callback_event_queued_at"),
    ]

    operations = [
        drop_own_index(
            "wecom_integration", "callbackevent", "tenant", to=settings.WECOM_TENANT_MODEL, related_name="wecom_events"
        ),
    ]

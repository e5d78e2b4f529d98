# Binding.tenant loses its own index: uniq_binding_user (tenant, user) starts with the tenant and serves the
# same lookups, and a confirm that binds 100,000 members writes 100,000 index entries fewer (issue 19).

from django.conf import settings
from django.db import migrations

from wecom_integration.migration_ops import drop_own_index


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("wecom_integration", "0019_customer_tenant_labels"),
        migrations.swappable_dependency(settings.WECOM_TENANT_MODEL),
    ]

    operations = [
        drop_own_index(
            "wecom_integration", "binding", "tenant", to=settings.WECOM_TENANT_MODEL, related_name="wecom_bindings"
        ),
    ]

# Membership.user and Membership.tenant lose their own indexes: the unique (user, tenant) serves lookups by
# user and the (tenant, status) index lookups by tenant, and a confirm that adds 100,000 memberships writes
# 200,000 index entries fewer (issue 19).

from django.conf import settings
from django.db import migrations

from wecom_integration.migration_ops import drop_own_index


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("tenants", "0002_default_tenant"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        drop_own_index("tenants", "membership", "tenant", to="tenants.tenant", related_name="memberships",
                       verbose_name="tenant"),
        drop_own_index("tenants", "membership", "user", to=settings.AUTH_USER_MODEL, related_name="memberships",
                       verbose_name="user"),
    ]

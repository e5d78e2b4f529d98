# CallbackEvent.tenant loses its own index: uniq_callback_event (tenant, kind, dedupe_key) starts with the
# tenant and serves the same lookups, and each callback's INSERT has one index fewer to update.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _index_name(schema_editor, model):
    # The name Django gave the ForeignKey's index (its "_like"-less btree), the same on every backend.
    return schema_editor._create_index_name(model._meta.db_table, ["tenant_id"])


def drop_tenant_index(apps, schema_editor):
    model = apps.get_model("wecom_integration", "CallbackEvent")
    name = schema_editor.quote_name(_index_name(schema_editor, model))
    # Not AlterField: on PostgreSQL it drops and adds the foreign key again, which checks every row
    # while it locks the table against the callbacks' INSERTs. CONCURRENTLY does not block them.
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")


def create_tenant_index(apps, schema_editor):
    model = apps.get_model("wecom_integration", "CallbackEvent")
    name = schema_editor.quote_name(_index_name(schema_editor, model))
    table = schema_editor.quote_name(model._meta.db_table)
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {table} ("tenant_id")')


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        migrations.swappable_dependency(settings.WECOM_TENANT_MODEL),
        ("wecom_integration", "0004_callback_event_queued_at"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="callbackevent",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="wecom_events",
                        to=settings.WECOM_TENANT_MODEL,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_tenant_index, create_tenant_index)],
        ),
    ]

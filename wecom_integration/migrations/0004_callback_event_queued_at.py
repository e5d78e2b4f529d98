# queued_at for the requeue sweep, and a partial index on the events it looks at.

from django.conf import settings
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgres(migrations.AddIndex):
    """AddIndex, built with CREATE INDEX CONCURRENTLY on PostgreSQL: the event log can be large and
    takes callbacks all the time, and a plain CREATE INDEX would block their INSERTs while it builds."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.add_index(model, self.index, concurrently=True)
            else:
                schema_editor.add_index(model, self.index)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.remove_index(model, self.index, concurrently=True)
            else:
                schema_editor.remove_index(model, self.index)


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        migrations.swappable_dependency(settings.WECOM_TENANT_MODEL),
        ("wecom_integration", "0003_wecomuser_field_times"),
    ]

    operations = [
        migrations.AddField(
            model_name="callbackevent",
            name="queued_at",
            field=models.DateTimeField(blank=True, null=True, verbose_name="queued again at"),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="callbackevent",
            index=models.Index(
                condition=models.Q(("status__in", ["received", "failed"])),
                fields=["received_at"],
                name="callback_event_pending",
            ),
        ),
    ]

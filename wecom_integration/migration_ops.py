"""Schema steps that migrations share.

:func:`drop_own_index` takes a ForeignKey's own index away where a composite index or unique constraint that
starts with the same column serves the same lookups: each INSERT then has one index fewer to update.
"""

from functools import partial

from django.db import migrations, models


def _index_sql(schema_editor, model, column):
    # The name Django gave the ForeignKey's index (its "_like"-less btree), the same on every backend.
    name = schema_editor.quote_name(schema_editor._create_index_name(model._meta.db_table, [column]))
    # CONCURRENTLY takes no lock that blocks the table's INSERTs (and needs a migration with atomic = False).
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    return name, concurrently


def _drop(app_label, model_name, column, apps, schema_editor):
    name, concurrently = _index_sql(schema_editor, apps.get_model(app_label, model_name), column)
    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")


def _create(app_label, model_name, column, apps, schema_editor):
    model = apps.get_model(app_label, model_name)
    name, concurrently = _index_sql(schema_editor, model, column)
    table = schema_editor.quote_name(model._meta.db_table)
    schema_editor.execute(
        f"CREATE INDEX{concurrently} IF NOT EXISTS {name} ON {table} ({schema_editor.quote_name(column)})"
    )


def drop_own_index(app_label, model_name, field_name, **options):
    """The operation that gives the ForeignKey ``field_name`` (on_delete=CASCADE, ``options`` as in its
    model: ``to``, ``related_name`` …) no index of its own. Not AlterField: on PostgreSQL it drops and adds
    the foreign key again, which checks every row while it locks the table against writes."""
    field = models.ForeignKey(on_delete=models.CASCADE, db_index=False, **options)
    column = f"{field_name}_id"
    return migrations.SeparateDatabaseAndState(
        state_operations=[migrations.AlterField(model_name=model_name, name=field_name, field=field)],
        database_operations=[
            migrations.RunPython(
                partial(_drop, app_label, model_name, column), partial(_create, app_label, model_name, column)
            )
        ],
    )

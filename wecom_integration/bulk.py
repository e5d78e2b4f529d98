"""Inserting many rows of one model without a model instance per row.

``bulk_create`` builds an instance per row, then prepares every field of every instance through the
SQL compiler: writing 100,000 members' accounts, memberships, bindings and audit records in a contact
sync's confirm spent most of its time there, far more than the database spent on the rows (issue 19).
:func:`insert_rows` writes the same rows from plain tuples: the values that are the same in every row
are prepared once, the others through their field as ``bulk_create`` would, and the statement is the
same multi-row INSERT. It is for the app's own tables and the default memberships, whose rows need
no primary key back; the host's user model keeps ``bulk_create``.
"""

import json
from collections.abc import Iterable, Sequence

from django.db import connections, models, router
from django.utils import timezone

#: Rows per INSERT at most (SQLite lowers it to its limit of variables per statement).
MAX_ROWS_PER_STATEMENT = 1000

# Fields whose get_db_prep_save() gives back a str as it is, on every backend (and the callback's
# INSERT reads the same way, callbacks.services._PASSTHROUGH_FIELDS). type(), not isinstance(): a
# subclass (an encrypted field) prepares its values itself.
_PASSTHROUGH_TEXT = (models.CharField, models.TextField)


def insert_rows(
    model: type[models.Model],
    columns: Sequence[str],
    rows: Iterable[Sequence],
    *,
    constants: dict | None = None,
    using: str | None = None,
) -> int:
    """INSERT ``rows`` (each a sequence of values for the fields named in ``columns``) into ``model``'s
    table, every row also taking ``constants`` ({field name: value}); returns how many rows.

    The rows written are those ``bulk_create`` would write for instances with these values: values go
    through their field's ``get_db_prep_save`` (a str for a plain CharField or TextField passes as it is),
    fields not named take their default, ``auto_now``/``auto_now_add`` fields the time of the call (one
    for every row, as one transaction writes them). A default is evaluated once per call, so a field
    whose default must differ per row (a random token) has to be named. Like ``bulk_create``, it sends
    no signals, runs no ``save()`` and no validators; it returns no primary keys.
    """
    using = using or router.db_for_write(model)
    connection = connections[using]
    opts = model._meta
    constants = dict(constants or {})
    varying = [opts.get_field(name) for name in columns]
    named = {field.name for field in varying} | {opts.get_field(name).name for name in constants}
    now = timezone.now()
    fixed = {}
    for field in opts.concrete_fields:
        if field.primary_key and field.name not in named:
            continue  # the database numbers the rows
        if field.name in constants or field.attname in constants:
            value = constants.get(field.name, constants.get(field.attname))
            if isinstance(value, models.Model):
                value = value.pk
        elif field.name in named:
            continue
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            value = now
        elif field.has_default():
            value = field.get_default()
        elif field.null:
            value = None
        else:
            raise ValueError(f"{opts.label}.{field.name} has no default: name it in columns or constants")
        fixed[field] = field.get_db_prep_save(value, connection)
    prepare = [None if type(field) in _PASSTHROUGH_TEXT else _preparer(field, connection) for field in varying]
    if not varying:
        raise ValueError("insert_rows needs at least one column that varies by row")
    quote = connection.ops.quote_name
    fields = [*fixed, *varying]
    into = f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(field.column) for field in fields)})"
    head = list(fixed.values())
    if connection.vendor == "postgresql":
        # One array per varying column, as Django's own bulk insert does on PostgreSQL: a statement of
        # thousands of placeholders costs psycopg more to parse (in Python) than the server to run.
        # The types lose their length (varchar, not varchar(64)) so that nothing is cut short silently.
        # Each array goes as one literal (_array), not as a list psycopg would quote value by value.
        def cast(field, suffix=""):
            return f"(%s)::{field.db_type(connection).split('(')[0]}{suffix}"

        sql = (f"{into} SELECT {', '.join([cast(field) for field in fixed] + ['*'])} "
               f"FROM UNNEST({', '.join(cast(field, '[]') for field in varying)})")
        size = MAX_ROWS_PER_STATEMENT

        def statement(batch):
            return sql, [*head, *(_array(column) for column in zip(*batch, strict=True))]
    else:
        placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
        limit = connection.ops.bulk_batch_size(fields, [None] * MAX_ROWS_PER_STATEMENT)
        size = max(1, min(MAX_ROWS_PER_STATEMENT, limit))

        def statement(batch):
            return f"{into} VALUES {', '.join([placeholder] * len(batch))}", [v for row in batch for v in (*head, *row)]

    written = 0
    batch = []

    def flush():
        nonlocal written
        sql, params = statement(batch)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
        written += len(batch)
        batch.clear()

    for row in rows:
        batch.append([value if prep is None else prep(value) for prep, value in zip(prepare, row, strict=True)])
        if len(batch) >= size:
            flush()
    if batch:
        flush()
    return written


def _preparer(field, connection):
    def prepare(value):
        return field.get_db_prep_save(value, connection)

    return prepare


def _array(values):
    """A PostgreSQL array literal of ``values`` (ints, strs, JSON as Django prepares it, None), or the list
    itself for psycopg to adapt when it holds anything else. A JSON value is serialised once however many
    rows share it (the confirm's audit records share a handful of details)."""
    items, seen = [], {}
    for value in values:
        if value is None:
            items.append("NULL")
        elif isinstance(value, int) and not isinstance(value, bool):
            items.append("%d" % value)  # not str(): psycopg's Int8 is an int whose str() is "Int8(5)"
        elif isinstance(value, str):
            items.append(_quoted(value))
        elif hasattr(value, "obj") and hasattr(value, "dumps"):  # psycopg's Json / Jsonb wrapper
            key = id(value.obj)
            if key not in seen:
                # The object is kept with its text, so that its id stays its own while this runs.
                seen[key] = (value.obj, _quoted((value.dumps or json.dumps)(value.obj)))
            items.append(seen[key][1])
        else:
            return list(values)
    return "{" + ",".join(items) + "}"


def _quoted(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

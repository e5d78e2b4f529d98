"""The callback INSERT handed to libpq in one call, when nothing watches the database cursors.

Through a psycopg cursor the INSERT of a callback cost the web process about 60 µs of CPU in-process,
twice the cost of its round trip: psycopg's cursor, the conversion of the query's placeholders, a dumper
looked up per value and the Python generators that wait on the socket (issue 19). Handing the same
statement and values to libpq (``PQexecPrepared``, or ``PQexecParams`` where the connection must not
prepare statements) costs about half. The row written is the same: the values are sent as text, which
is how PostgreSQL reads them from any client, and the statement is the cursor path's own, with ``$n``
placeholders.

:func:`insert` does it only when it is safe to step around the cursor, and answers :data:`UNSUITED`
otherwise, for the caller to use the cursor as before:

- PostgreSQL through psycopg 3, on a connection in autocommit with no transaction open (an atomic block
  runs its statements through psycopg, which opens its transaction with them);
- nothing watches Django's cursors: no query logging (``DEBUG``, ``CaptureQueriesContext``, the debug
  toolbar), no ``connection.execute_wrapper()``, neither Django's ``CursorWrapper.execute`` nor
  psycopg's ``Cursor.execute`` replaced or wrapped, and the connection's cursor class Django's or
  psycopg's own (tracers such as Sentry, ddtrace, New Relic and OpenTelemetry do one of these to see
  queries): an installed tracer keeps seeing the INSERT;
- every value is a str without a NUL, an int, None or a datetime (the JSON of a passive reply is not:
  its row goes through the cursor).

Errors are psycopg's and Django's as through the cursor: the result's error becomes psycopg's exception
for its SQLSTATE inside ``wrap_database_errors``, so a lost connection is an ``OperationalError`` and a
violated constraint an ``IntegrityError``. The prepared statement is per connection; when it is gone
(psycopg's ``DEALLOCATE ALL`` after a rollback, a pooler's reset) it is prepared again and the INSERT
sent once more, which is safe in autocommit.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import types
import weakref

from django.db.backends.utils import CursorWrapper

#: What :func:`insert` answers when the cursor must write the row instead.
UNSUITED = object()

_PLACEHOLDER = re.compile(r"%s")
# Where the cursor classes Django and psycopg give a connection come from; any other is someone's wrapper.
_OWN_CURSOR_MODULES = frozenset({"django.db.backends.postgresql.base", "psycopg.cursor", "psycopg.client_cursor"})
# PostgreSQL's "prepared statement does not exist".
_NO_SUCH_STATEMENT = "26000"
# Per psycopg connection: the names of the statements prepared on it by this module.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Per statement text (with %s placeholders): its $n text and the name it is prepared under.
_texts: dict[str, tuple[bytes, bytes]] = {}


def insert(conn, sql: str, params) -> int | None | object:
    """Run ``sql`` (one statement with ``%s`` placeholders, returning one column of at most one row) with
    ``params`` on the Django connection ``conn`` through libpq. Returns the column's value as an int, None
    when no row came back, or :data:`UNSUITED` when it did not run (see the module's docstring)."""
    pgconn_owner = conn.connection
    if pgconn_owner is None or conn.in_atomic_block or _watched(conn):
        return UNSUITED
    psycopg = _psycopg()
    if psycopg is None or type(pgconn_owner) is not psycopg.Connection or not pgconn_owner.autocommit:
        return UNSUITED
    if pgconn_owner.cursor_factory.__module__ not in _OWN_CURSOR_MODULES:
        return UNSUITED  # a tracer's cursor class (opentelemetry's psycopg instrumentation sets one)
    pgconn = pgconn_owner.pgconn
    if pgconn.transaction_status != _IDLE[0]:
        return UNSUITED
    if pgconn.parameter_status(b"client_encoding") != b"UTF8":
        return UNSUITED
    values = _as_text(params)
    if values is None:
        return UNSUITED
    text, name = _texts.get(sql) or _translate(sql)
    prepare = pgconn_owner.prepare_threshold is not None
    with conn.wrap_database_errors, pgconn_owner.lock:
        result = _run(psycopg, pgconn_owner, pgconn, text, name if prepare else None, values)
    if result.ntuples == 0:
        return None
    return int(result.get_value(0, 0))


def _run(psycopg, owner, pgconn, text: bytes, name: bytes | None, values: list):
    ok = psycopg.pq.ExecStatus.TUPLES_OK
    if name is None:
        result = pgconn.exec_params(text, values)
        if result.status != ok:
            raise _error(psycopg, pgconn, result)
        return result
    names = _prepared.setdefault(owner, set())
    for attempt in (1, 2):
        if name not in names:
            made = pgconn.prepare(name, text)
            if made.status != psycopg.pq.ExecStatus.COMMAND_OK:
                raise _error(psycopg, pgconn, made)
            names.add(name)
        result = pgconn.exec_prepared(name, values)
        if result.status == ok:
            return result
        error = _error(psycopg, pgconn, result)
        if attempt == 1 and getattr(error, "sqlstate", None) == _NO_SUCH_STATEMENT:
            # Deallocated behind our back: nothing ran, prepare it again.
            names.discard(name)
            continue
        raise error
    raise AssertionError("unreachable")


def _error(psycopg, pgconn, result):
    if pgconn.status != psycopg.pq.ConnStatus.OK:
        message = pgconn.get_error_message()
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        return psycopg.OperationalError(f"the connection to PostgreSQL was lost: {message.strip()}")
    return psycopg.errors.error_from_result(result, encoding="utf-8")


def _translate(sql: str) -> tuple[bytes, bytes]:
    numbers = iter(range(1, 65536))
    text = _PLACEHOLDER.sub(lambda match: f"${next(numbers)}", sql).encode("utf-8")
    name = b"wecom_" + hashlib.sha1(text).hexdigest()[:16].encode("ascii")
    _texts[sql] = text, name
    return text, name


def _as_text(params) -> list | None:
    """``params`` as libpq takes them in text format, or None if one of them is not plainly text."""
    out = []
    append = out.append
    for value in params:
        kind = type(value)
        if kind is str or isinstance(value, str):
            # libpq reads a text parameter up to its first NUL: let the cursor refuse it as it does.
            if "\x00" in value:
                return None
            try:
                append(value.encode("utf-8"))
            except UnicodeEncodeError:
                return None
        elif kind is int or (kind is not bool and isinstance(value, int)):
            append(b"%d" % value)
        elif value is None:
            append(None)
        elif kind is datetime.datetime:
            append(value.isoformat().encode("ascii"))
        else:
            return None
    return out


# The execute methods of Django's CursorWrapper and psycopg's Cursor last found to be their own: while both
# are still in place nothing has replaced them since, and the check is one comparison (issue 19).
_unwatched_methods: list = []


def _watched(conn) -> bool:
    """Whether something watches Django's or psycopg's statements, so this must go through a cursor."""
    if conn.queries_logged or conn.execute_wrappers:
        return True
    psycopg = _psycopg()
    django_execute = CursorWrapper.__dict__.get("execute")
    psycopg_execute = psycopg.Cursor.__dict__.get("execute") if psycopg is not None else None
    # By identity: a wrapper object (wrapt's, as several tracers use) compares equal to what it wraps.
    if _unwatched_methods and _unwatched_methods[0] is django_execute and _unwatched_methods[1] is psycopg_execute:
        return False
    if not _original(CursorWrapper, "execute", "django.db.backends.utils"):
        return True
    if psycopg is not None and not _original(psycopg.Cursor, "execute", "psycopg.cursor"):
        return True
    _unwatched_methods[:] = [django_execute, psycopg_execute]
    return False


def _original(cls, attribute: str, module: str) -> bool:
    # A tracer replaces the method with its own function (another module) or wraps it in an object.
    method = cls.__dict__.get(attribute)
    return type(method) is types.FunctionType and method.__module__ == module


_psycopg_module: list = []
# psycopg.pq.TransactionStatus.IDLE, read once with the module.
_IDLE: list = [None]


def _psycopg():
    """psycopg 3, or None (psycopg 2, or no PostgreSQL driver)."""
    if not _psycopg_module:
        try:
            import psycopg
            import psycopg.errors
            import psycopg.pq
        except ImportError:
            psycopg = None
        else:
            _IDLE[0] = psycopg.pq.TransactionStatus.IDLE
        _psycopg_module.append(psycopg)
    return _psycopg_module[0]

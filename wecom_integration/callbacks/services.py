"""WeCom callbacks: receive (verify, decrypt, parse, store once, enqueue, answer) and handle.

Receiving is what the three callback views call, and it must answer well inside WeCom's 5 s
(https://developer.work.weixin.qq.com/document/path/90238): one INSERT of the decrypted event (the
tenant's credentials are read once and kept a few seconds per process), no WeCom API call. The
handling runs later in a Celery task (:func:`handle_event`), which updates the local mirror, the
customers and the inbox, and sends the signals of :mod:`wecom_integration.signals` once that has
committed.

Anything refused raises :class:`CallbackRefused`, a ``SuspiciousOperation`` that carries the HTTP status
to answer and a short fixed ``reason`` for the log. Nothing refused is ever stored.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial

import msgspec
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import InterfaceError, OperationalError, connections, models, router, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from wecom_integration import observability, queueing
from wecom_integration.callbacks import libpq, registry
from wecom_integration.callbacks.publisher import BatchPublisher
from wecom_integration.conf import wecom_settings
from wecom_integration.crypto import WeComCrypto, WeComCryptoError, parse_envelope
from wecom_integration.events import Event, EventParseError, parse_event
from wecom_integration.models import CallbackEvent, WeComConfig

logger = logging.getLogger("wecom_integration.callbacks")

# The fields a callback needs from WeComConfig; the other secrets are not even decrypted.
_ENDPOINT_FIELDS = ("tenant", "corp_id", "agent_id", "enabled", "auto_reply", "two_step_verification")
# Unix seconds as WeCom sends them; 12 digits keep int() cheap and cover the next 30,000 years.
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
# CallbackEvent.create_time is a BigIntegerField; a larger CreateTime is stored as 0 (the XML keeps it).
_MAX_BIGINT = 2**63 - 1


class CallbackRefused(SuspiciousOperation):
    """A callback that is not accepted. ``status`` is the HTTP status to answer (400 unless said
    otherwise), ``reason`` a fixed token for logs and metrics (never request data or secrets) and
    ``code`` the official sample's -400xx number when the cipher refused it."""

    status = 400

    def __init__(self, reason: str, *, status: int | None = None, code: int | None = None):
        self.reason = reason
        if status is not None:
            self.status = status
        self.code = code
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One tenant's callback URL of one kind, ready to verify and decrypt."""

    config: WeComConfig
    kind: str
    crypto: WeComCrypto


class Answer(msgspec.Struct, frozen=True):
    """What the view sends back: ``body`` with ``content_type``; ``event_id`` is the stored row
    (the existing one for a retried delivery), ``created`` whether this delivery stored it. A frozen
    msgspec Struct, as the events are: one is built per callback, in a seventh of a frozen dataclass's
    time."""

    body: bytes
    content_type: str
    event_id: int | None = None
    created: bool = False


SUCCESS = Answer(b"success", "text/plain; charset=utf-8")


@lru_cache(maxsize=512)
def _crypto(token: str, aes_key: str, corp_id: str) -> WeComCrypto:
    # Building one runs the AES key schedule; a tenant's credentials change rarely, so keep them.
    return WeComCrypto(token, aes_key, corp_id)


# A web process keeps each tenant's endpoint (or its refusal) this long, so that a callback costs one
# INSERT and no SELECT. Saving or deleting a configuration drops them at once in the process that did
# it, and within this many seconds in every other process.
ENDPOINT_CACHE_SECONDS = 5.0
# Refusals of unknown tenant ids are cached too; past this many entries the cache starts afresh, so
# probing random ids cannot grow it without bound.
_ENDPOINT_CACHE_MAX = 10_000
_endpoints: dict[tuple[int, str], tuple[float, Endpoint | CallbackRefused]] = {}


def _forget_endpoints(**kwargs) -> None:
    _endpoints.clear()


post_save.connect(_forget_endpoints, sender=WeComConfig, dispatch_uid="wecom_callback_endpoints_save")
post_delete.connect(_forget_endpoints, sender=WeComConfig, dispatch_uid="wecom_callback_endpoints_delete")


def load_endpoint(tenant_id: int, kind: str) -> Endpoint:
    """The tenant's callback endpoint of ``kind`` ("app", "contacts" or "customers").

    Raises :class:`CallbackRefused`: 404 for an unknown tenant or one without that URL's Token and
    EncodingAESKey (the two look the same from outside, so tenant ids cannot be probed), 403 for a
    disabled configuration, 503 when the stored credentials cannot be decrypted. Answers are kept
    :data:`ENDPOINT_CACHE_SECONDS` per process.
    """
    key = (tenant_id, kind)
    now = time.monotonic()
    cached = _endpoints.get(key)
    if cached is None or cached[0] <= now:
        try:
            cached = (now + ENDPOINT_CACHE_SECONDS, _load_endpoint(tenant_id, kind))
        except CallbackRefused as refusal:
            if refusal.status >= 500:
                raise
            cached = (now + ENDPOINT_CACHE_SECONDS, refusal)
        if len(_endpoints) >= _ENDPOINT_CACHE_MAX:
            _endpoints.clear()
        _endpoints[key] = cached
    endpoint = cached[1]
    if isinstance(endpoint, CallbackRefused):
        raise CallbackRefused(endpoint.reason, status=endpoint.status, code=endpoint.code)
    return endpoint


# Refusals of a tenant that exists: what the configuration page can tell its admin about.
_TENANT_REFUSALS = frozenset({"disabled", "not_configured", "bad_stored_credentials"})


def endpoint_known(tenant_id: int, kind: str) -> bool:
    """True when this process loaded the tenant's endpoint of ``kind`` (or refused it for a reason
    that means the tenant exists): the tenant is real, so a note about its URL can be kept. A request
    refused before its endpoint was looked up (a bad query, a body too large) or for an unknown tenant
    is not."""
    cached = _endpoints.get((tenant_id, kind))
    if cached is None:
        return False
    endpoint = cached[1]
    return not isinstance(endpoint, CallbackRefused) or endpoint.reason in _TENANT_REFUSALS


def _load_endpoint(tenant_id: int, kind: str) -> Endpoint:
    token_field, key_field = WeComConfig.CALLBACK_KINDS[kind]
    try:
        config = WeComConfig.objects.only(*_ENDPOINT_FIELDS, token_field, key_field).filter(tenant_id=tenant_id).first()
    except ImproperlyConfigured:
        # WECOM_FIELD_KEYS lost the key that encrypted the Token: only the operator can fix that.
        logger.exception("WeCom callback credentials of tenant %s cannot be decrypted", tenant_id)
        raise CallbackRefused("undecryptable_credentials", status=503) from None
    if config is None:
        raise CallbackRefused("unknown_tenant", status=404)
    if not config.enabled:
        raise CallbackRefused("disabled", status=403)
    token, aes_key = config.callback_credentials(kind)
    if not token or not aes_key:
        raise CallbackRefused("not_configured", status=404)
    try:
        crypto = _crypto(token, aes_key, config.corp_id)
    except WeComCryptoError as exc:
        # The model validates both on save, so this is a row written around the validators.
        raise CallbackRefused("bad_stored_credentials", status=404, code=exc.code) from None
    return Endpoint(config=config, kind=kind, crypto=crypto)


def check_timestamp(timestamp: str | None, *, window: int | None = None, now: float | None = None) -> int:
    """The query's timestamp as an int, refused when missing, malformed or, if ``window`` (seconds)
    is given, further than that from ``now`` in either direction (a replay, or a skewed clock)."""
    if not timestamp:
        raise CallbackRefused("missing_timestamp", code=-40001)
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise CallbackRefused("malformed_timestamp", code=-40001)
    value = int(timestamp)
    if window is not None:
        now = time.time() if now is None else now
        if abs(now - value) > window:
            raise CallbackRefused("stale_timestamp", code=-40001)
    return value


def verify_url(tenant_id: int, kind: str, *, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
    """Answer WeCom's URL verification: the decrypted ``echostr``, to be sent back byte for byte.

    https://developer.work.weixin.qq.com/document/path/90930. The timestamp's form is checked but
    not its age: a replayed verification stores nothing and tells nothing its eavesdropper did not
    already see, and WeCom's console sends it only when an admin saves the URL.
    """
    endpoint = load_endpoint(tenant_id, kind)
    check_timestamp(timestamp)
    try:
        return endpoint.crypto.verify_url(msg_signature, timestamp, nonce, echostr)
    except WeComCryptoError as exc:
        raise CallbackRefused(exc.reason, code=exc.code) from None


def check_envelope(endpoint: Endpoint, envelope) -> None:
    """Refuse an envelope whose ``ToUserName`` is not the receive id the cipher checks (the tenant's
    CorpID; a suite's id for third-party suites): an envelope naming another corp, or none, is not
    stored (issue 16). One string comparison, on the hot path.

    https://developer.work.weixin.qq.com/document/path/90930 (ToUserName: 企业微信的CorpID，当为第三方
    套件回调事件时，CorpID的内容为suiteid)
    """
    if envelope.to_user_name != endpoint.config.corp_id:
        raise CallbackRefused("envelope_not_for_this_corp" if envelope.to_user_name else "envelope_without_corp")


def receive(
    tenant_id: int,
    kind: str,
    *,
    msg_signature: str,
    timestamp: str,
    nonce: str,
    body: bytes,
    request_id: str = "",
) -> Answer:
    """Accept one callback POST and return the answer for WeCom.

    https://developer.work.weixin.qq.com/document/path/90930 and 90238: verify the signature and the
    timestamp window, decrypt, check that the envelope names the tenant's corp, parse, store the event
    once per dedupe key, enqueue its handling after the commit and answer "success" or, for app
    messages, an encrypted passive reply. A retried delivery (same dedupe key) is answered the same
    way and neither stored nor handled again.
    """
    endpoint = load_endpoint(tenant_id, kind)
    check_timestamp(timestamp, window=wecom_settings.CALLBACK_TIMESTAMP_WINDOW)
    try:
        envelope = parse_envelope(body)
        xml, utf8 = endpoint.crypto.decrypt_utf8(msg_signature, timestamp, nonce, envelope.encrypt)
    except WeComCryptoError as exc:
        raise CallbackRefused(exc.reason, code=exc.code) from None
    check_envelope(endpoint, envelope)
    try:
        event = parse_event(xml, utf8)
    except EventParseError:
        raise CallbackRefused("malformed_message_xml", code=-40002) from None

    replier = registry.replier() if kind == CallbackEvent.Kind.APP else None
    reply = replier.decide(endpoint.config, event) if replier is not None else None
    row = _store(tenant_id, kind, event, reply=reply, request_id=request_id)
    created = row.created
    observability.record_callback_received(kind, duplicate=not created)
    if logger.isEnabledFor(logging.INFO):
        observability.log_event(
            logger,
            "callback.received",
            tenant=tenant_id,
            kind=kind,
            event_id=row.pk,
            outcome="accepted" if created else "duplicate",
            change_type=event.change_type or event.event or event.msg_type or "",
        )
    if not created:
        if row.status == CallbackEvent.Status.RECEIVED:
            # The first delivery's enqueue may have been lost (broker down); handling twice is a no-op.
            transaction.on_commit(partial(enqueue, row.pk))
        reply = row.reply
    if reply:
        replier = registry.replier()
        if replier is not None:
            plain = replier.render(event, endpoint.config.corp_id, reply)
            if plain is not None:
                encrypted = endpoint.crypto.build_reply(plain)
                return Answer(encrypted.encode(), "application/xml; charset=utf-8", row.pk, created)
    return Answer(SUCCESS.body, SUCCESS.content_type, row.pk, created)


def store_event(
    tenant_id: int, kind: str, event: Event, *, reply: dict | None = None, request_id: str = ""
) -> tuple[CallbackEvent, bool]:
    """Store ``event`` unless one with its dedupe key is stored already; returns (row, created).

    The unique constraint decides (INSERT … ON CONFLICT DO NOTHING), so two deliveries racing on two
    workers store one row and neither fails. A new row's handling is enqueued once it has committed.
    :func:`receive` stores through :func:`_store`, which builds no model instance; this gives one back.
    """
    stored = _store(tenant_id, kind, event, reply=reply, request_id=request_id)
    if not stored.created:
        return CallbackEvent.objects.get(pk=stored.pk), False
    return CallbackEvent.objects.get(pk=stored.pk), True


class Stored(msgspec.Struct, frozen=True):
    """What :func:`receive` needs of the stored row: its id, whether this delivery stored it, and for
    a retried delivery the first one's status and reply."""

    pk: int
    created: bool
    status: str = CallbackEvent.Status.RECEIVED
    reply: dict | None = None


def _store(tenant_id: int, kind: str, event: Event, *, reply: dict | None, request_id: str) -> Stored:
    values = (
        tenant_id,
        kind,
        _fit(event.dedupe_key, 255),
        _fit(event.msg_type or "", 32),
        _fit(event.event or "", 64),
        _fit(event.change_type or "", 64),
        _fit(event.subject or "", 128),
        _fit(event.from_user_name or "", 128),
        event.create_time if 0 <= event.create_time <= _MAX_BIGINT else 0,
        event.xml,
        reply,
        request_id[:64],
        timezone.now(),
    )
    conn = connections[router.db_for_write(CallbackEvent)]
    # Decided before the round trip, not after it: a process that has just waited on the database comes
    # back to cold caches, where reading Celery's configuration cost 20 µs instead of 5 (issue 19). Only
    # what depends on the INSERT's answer runs after it.
    eager = None if conn.in_atomic_block else queueing.is_eager()
    pk = _insert_unless_stored(conn, values)
    if pk is None:
        existing = (
            CallbackEvent.objects.filter(tenant_id=tenant_id, kind=kind, dedupe_key=values[2])
            .values_list("id", "status", "reply")
            .first()
        )
        if existing is None:
            # Stored and deleted in between: nothing left to answer for but the delivery itself.
            raise CallbackRefused("vanished_duplicate", status=503)
        return Stored(existing[0], False, existing[1], existing[2])
    if eager is None:
        transaction.on_commit(partial(enqueue, pk), using=conn.alias)
    else:
        enqueue(pk, eager=eager)  # what on_commit does outside a transaction, without its bookkeeping
    return Stored(pk, True)


# The columns a callback fills, in the order of :func:`_store`'s values. Every other column of
# CallbackEvent takes its default (a constant, prepared once per process: see :func:`_insert_statement`).
_STORED_FIELDS = (
    "tenant",
    "kind",
    "dedupe_key",
    "msg_type",
    "event",
    "change_type",
    "subject",
    "from_user",
    "create_time",
    "xml",
    "reply",
    "request_id",
    "received_at",
)


def _insert_unless_stored(conn, values: tuple) -> int | None:
    """INSERT a callback's row unless its (tenant, kind, dedupe_key) exists; its new id, or None.

    One statement, so in autocommit it is one round trip, and a duplicate is no error to recover
    from (PostgreSQL and SQLite ≥ 3.35 both have ON CONFLICT DO NOTHING … RETURNING). ``values`` are
    those of :data:`_STORED_FIELDS`; each goes through its field's own preparation, exactly as
    ``save()`` would send it, except a value of the type its column takes as it is (see
    :func:`_insert_statement`). ``conn`` is the connection CallbackEvent is written to, which the caller
    looks up once: each attribute read through ``django.db.connection`` costs a thread-local lookup.
    """
    passes, constants, sql = _statements.get(conn.alias) or _insert_statement(conn)
    params = [
        value if value is None or type(value) is kind else field.get_db_prep_save(value, conn)
        for (field, kind), value in zip(passes, values, strict=True)
    ]
    params.extend(constants)
    try:
        return _execute_insert(conn, sql, params)
    except (OperationalError, InterfaceError):
        # A connection the database dropped (a restart, an idle timeout) fails its next statement. Outside
        # a transaction nothing else is lost, and the INSERT may run twice (ON CONFLICT keeps one row), so
        # try once more on a new connection rather than refuse WeCom's delivery.
        if conn.in_atomic_block or conn.is_usable():
            raise
        logger.warning("Database connection lost; storing the callback on a new connection")
        conn.close()
        return _execute_insert(conn, sql, params)


def _execute_insert(conn, sql: str, values: list) -> int | None:
    if conn.vendor == "postgresql":
        # Straight to libpq when nothing watches the cursors (see callbacks/libpq.py): half the CPU.
        conn.close_if_health_check_failed()
        conn.ensure_connection()
        found = libpq.insert(conn, sql, values)
        if found is not libpq.UNSUITED:
            return found
    with _binding_cursor(conn) as cursor:
        cursor.execute(sql, values)
        found = cursor.fetchone()
    return found[0] if found else None


# The Python type each kind of field sends as it is: its get_db_prep_save() would give the value back
# unchanged (a str to a text column, on every backend), or prepares it only for a cursor that binds
# on the client (Django wraps an int in psycopg 3's Int8 so the SQL text it writes is typed; the
# server-side binding of :func:`_binding_cursor`, psycopg 2 and SQLite take the int). type() and not
# isinstance(): a subclass (a custom or encrypted field) prepares its values itself. JSON and anything
# else always go through their field; a datetime does except where the backend takes it as it is.
_PASSTHROUGH_TYPES = {
    models.CharField: str,
    models.TextField: str,
    models.BigIntegerField: int,
    models.ForeignKey: int,
}


_statements: dict[str, tuple[tuple, tuple, str]] = {}


def _insert_statement(conn) -> tuple[tuple, tuple, str]:
    """The callback INSERT on ``conn``: for each of :data:`_STORED_FIELDS` its field and the type that
    passes without preparation (None: none does), the other columns' prepared defaults, and the SQL;
    kept per connection alias. ``received_at`` is stamped by :func:`_store` as ``auto_now_add`` would."""
    opts = CallbackEvent._meta
    quote = conn.ops.quote_name
    given = [opts.get_field(name) for name in _STORED_FIELDS]
    others = [field for field in opts.concrete_fields if not field.primary_key and field not in given]
    for field in others:
        stamped = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        if stamped or (field.has_default() and callable(field.default)):
            raise ImproperlyConfigured(f"CallbackEvent.{field.name}: the callback INSERT needs a constant default")
    constants = tuple(field.get_db_prep_save(field.get_default(), conn) for field in others)
    passes = tuple((field, _passthrough_type(field, conn)) for field in given)
    columns = ", ".join(quote(field.column) for field in [*given, *others])
    conflict = ", ".join(quote(opts.get_field(name).column) for name in ("tenant", "kind", "dedupe_key"))
    sql = (
        f"INSERT INTO {quote(opts.db_table)} ({columns}) VALUES ({', '.join(['%s'] * (len(given) + len(others)))}) "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {quote(opts.pk.column)}"
    )
    _statements[conn.alias] = passes, constants, sql
    return passes, constants, sql


def _passthrough_type(field, conn) -> type | None:
    if type(field) is models.DateTimeField:
        # received_at, stamped by _store with timezone.now() (aware exactly when USE_TZ is on, so its field
        # would not change it): sent as it is where the backend takes a datetime unchanged (PostgreSQL).
        probe = datetime(2000, 1, 1, tzinfo=UTC)
        return datetime if conn.ops.adapt_datetimefield_value(probe) is probe else None
    kind = _PASSTHROUGH_TYPES.get(type(field))
    if kind is int and type(field) is models.ForeignKey:
        # A foreign key sends what its target's field sends: an int for an integer primary key.
        target = type(field.target_field)
        if target not in (models.AutoField, models.BigAutoField, models.IntegerField, models.BigIntegerField):
            return None
    return kind


def _binding_cursor(conn):
    """A cursor for the callback's INSERT. On PostgreSQL with psycopg 3 it binds parameters on the
    server (Django's default cursor quotes all 18 values into the SQL text in Python, which costs more
    than the rest of the INSERT); it is wrapped like any Django cursor, so errors become Django's, and
    queries are logged and counted as usual. PostgreSQL also prepares the statement when the
    database's OPTIONS set ``prepare_threshold``. Elsewhere, Django's own cursor."""
    if conn.vendor != "postgresql":
        return conn.cursor()
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3:
        return conn.cursor()
    import psycopg

    conn.close_if_health_check_failed()
    conn.ensure_connection()
    with conn.wrap_database_errors:
        return conn._prepare_cursor(psycopg.Cursor(conn.connection))


def _fit(text: str, size: int) -> str:
    """``text`` cut to a column's size; a cut dedupe key keeps a digest of the whole so it stays unique."""
    if len(text) <= size:
        return text
    if size < 100:
        return text[:size]
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return text[: size - len(digest) - 1] + "#" + digest


# The tasks' names (a contract with running deployments: queued messages and routes name them).
HANDLE_EVENT_TASK = "wecom_integration.tasks.handle_callback_event"
HANDLE_EVENTS_TASK = "wecom_integration.tasks.handle_callback_events"


def enqueue(event_id: int, *, eager: bool | None = None) -> None:
    """Queue the handling of a stored event; ``eager`` is :func:`queueing.is_eager` when the caller has read
    it already.

    With a broker, the id goes to this process's :data:`publisher`, which sends the ids gathered within
    ``CALLBACK_BATCH_LINGER`` (0.1 s), and no sooner than ``CALLBACK_BATCH_INTERVAL`` (0.5 s) after its
    previous message, as one ``handle_callback_events`` message; with eager Celery (no
    broker) the event is handled right here. A broker failure is logged and the event stays "received":
    :func:`requeue_stale_events` (or WeCom's next retry of it) queues it again.
    """
    if queueing.is_eager() if eager is None else eager:
        try:
            queueing.delay(HANDLE_EVENT_TASK, event_id)
        except Exception:
            logger.exception("Could not queue WeCom callback event %s; it stays received", event_id)
        return
    publisher.submit(event_id)


def _publish_batch(event_ids: list[int]) -> None:
    described = f"({len(event_ids)} event ids: {event_ids[0]}…{event_ids[-1]},)"
    queueing.send(HANDLE_EVENTS_TASK, (event_ids,), argsrepr=described)


publisher = BatchPublisher(
    _publish_batch,
    max_batch=lambda: wecom_settings.CALLBACK_BATCH_SIZE,
    linger=lambda: wecom_settings.CALLBACK_BATCH_LINGER,
    interval=lambda: wecom_settings.CALLBACK_BATCH_INTERVAL,
    name="callback-publisher",
)


def retry_event(event_id: int) -> bool:
    """Queue a stored event's handling again (the admin's "retry"); False if it was handled already.

    Its last error stays visible until a run succeeds; ``attempts`` keeps counting.
    """
    updated = (
        CallbackEvent.objects.filter(pk=event_id)
        .exclude(status=CallbackEvent.Status.HANDLED)
        .update(status=CallbackEvent.Status.RECEIVED, queued_at=timezone.now())
    )
    if updated:
        transaction.on_commit(partial(_enqueue_now, event_id))
    return bool(updated)


def _enqueue_now(event_id: int) -> None:
    """One event's own message, sent now (the admin waits for it; retries are rare)."""
    try:
        queueing.delay(HANDLE_EVENT_TASK, event_id)
    except Exception:
        logger.exception("Could not queue WeCom callback event %s; it stays received", event_id)


def retry_events(queryset) -> tuple[int, int]:
    """:func:`retry_event` for each event of ``queryset``; returns (queued, skipped as handled)."""
    ids = list(queryset.values_list("pk", flat=True))
    queued = sum(1 for event_id in ids if retry_event(event_id))
    return queued, len(ids) - queued


def stale_events(older_than: float = 600):
    """Events whose handling should have happened by now: "received", or "failed" with retries left,
    and not queued (by the receipt, this sweep, a retry or the admin) in the last ``older_than`` s.

    The queued time is the row's ``queued_at``, or its ``received_at`` when only the receipt queued it.
    A task still waiting in a long queue looks the same as a lost one; queueing it again is harmless
    (handling is idempotent) and happens at most once per ``older_than``.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than)
    pending = CallbackEvent.objects.filter(status__in=CallbackEvent.PENDING_STATUSES).filter(
        Q(status=CallbackEvent.Status.RECEIVED)
        | Q(status=CallbackEvent.Status.FAILED, attempts__lte=wecom_settings.HANDLER_MAX_RETRIES)
    )
    return pending.filter(Q(queued_at__lt=cutoff) | Q(queued_at__isnull=True, received_at__lt=cutoff))


def requeue_stale_events(older_than: float = 600, limit: int = 20_000) -> int:
    """Queue again the :func:`stale_events` (their task was lost, e.g. with a broker that restarted
    without persistence, or their process died before publishing); at most ``limit`` per call, oldest
    first, in messages of ``CALLBACK_BATCH_SIZE`` events. Meant for a periodic task (celery beat)."""
    ids = list(stale_events(older_than).order_by("received_at", "id").values_list("pk", flat=True)[:limit])
    size = max(1, int(wecom_settings.CALLBACK_BATCH_SIZE))
    queued = 0
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        # Marked first: if the publish fails, the next sweep after ``older_than`` tries again.
        CallbackEvent.objects.filter(pk__in=chunk).update(queued_at=timezone.now())
        try:
            queueing.delay(HANDLE_EVENTS_TASK, chunk)
        except Exception:
            logger.exception("Could not queue %s stale WeCom callback event(s)", len(chunk))
            break
        queued += len(chunk)
    if ids:
        observability.log_event(logger, "callback.requeued", count=queued, found=len(ids))
    return queued

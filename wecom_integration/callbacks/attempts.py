"""What the configuration page shows about each callback URL: its last verifications and deliveries,
and for a refused one which field to fix, in the admin's words.

The callback views call :func:`record` for every answered request. What is kept is bounded, so a flood
of forged requests cannot grow the database, and the successful path stays cheap:

* a request is written only when its outcome (the URL, verification or delivery, accepted or the field
  a refusal names) was not written in the last :data:`THROTTLE_SECONDS`: a per-process memo answers
  most requests with no I/O at all, and the first request after the memo expires asks the cache
  (``cache.add``, one operation, shared by every process) before writing; so a successful callback
  costs at most one cache operation and, all processes together, one row per outcome per window;
* each (URL, verification or delivery) keeps its :data:`KEEP` newest rows and its newest accepted
  one, whatever came after: a flood of refusals does not hide that deliveries worked an hour ago.

Refusals say which field to fix (:data:`PROBLEMS`, from the reason the callback service gave): the
Token (the signature does not match, doc 90930), the EncodingAESKey (decryption fails after a valid
signature, doc 91144), the CorpID (the plaintext's receiveid is another corp's), the clock (the
timestamp is outside the accepted window) or the configuration itself. A URL with no row at all was
never reached by WeCom.
"""

from __future__ import annotations

import logging
import time

from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.db.models.signals import post_save
from django.utils.translation import gettext_lazy as _

from wecom_integration.callbacks import services as callbacks
from wecom_integration.models import CallbackAttempt, CallbackEvent, WeComConfig

logger = logging.getLogger("wecom_integration.callbacks")

THROTTLE_SECONDS = 60
KEEP = 3
_MEMO_MAX = 10_000
_CACHE_PREFIX = "wecom:cbattempt:"

# Refusals that say nothing about a tenant's configuration: no row (an unknown tenant has none to
# attach it to; the others are this server's own trouble, already logged).
_UNRECORDED = frozenset({"unknown_tenant", "undecryptable_credentials", "database_error", "vanished_duplicate"})

TOKEN, AES_KEY, CORP_ID, CLOCK, CONFIGURE, DISABLED, REQUEST = (
    "token",
    "aes_key",
    "corp_id",
    "clock",
    "configure",
    "disabled",
    "request",
)

# The callback service's refusal reason -> the field to fix. Decryption faults come after a signature
# that matched, so the ciphertext is WeCom's and only the key can be wrong.
PROBLEMS = {
    "bad_signature": TOKEN,
    "receiveid_mismatch": CORP_ID,
    "stale_timestamp": CLOCK,
    "bad_base64": AES_KEY,
    "bad_ciphertext_length": AES_KEY,
    "bad_padding": AES_KEY,
    "too_short": AES_KEY,
    "length_overrun": AES_KEY,
    "not_configured": CONFIGURE,
    "bad_stored_credentials": CONFIGURE,
    "disabled": DISABLED,
}
_AES_CODES = (-40007, -40008)

ADVICE = {
    TOKEN: _(
        "The signature does not match: the Token entered here is not the one set for this URL in the WeCom "
        "admin console. Copy the Token again (or generate a new one there and paste it here)."
    ),
    AES_KEY: _(
        "WeCom's message could not be decrypted: the EncodingAESKey entered here is not the one set for this "
        "URL in the WeCom admin console. Copy the EncodingAESKey again."
    ),
    CORP_ID: _(
        "The message was sealed for another company: the CorpID entered here is not the CorpID of the "
        "company that sent it. Copy the CorpID from My Enterprise → Enterprise Information (企业ID)."
    ),
    CLOCK: _(
        "The request's timestamp is too far from this server's clock: set the server's time right "
        "(NTP), or the request was replayed."
    ),
    CONFIGURE: _("This URL's Token and EncodingAESKey are not entered here: enter both, as in the WeCom admin."),
    DISABLED: _("This configuration is disabled: enable it to accept callbacks."),
    REQUEST: _("The request was not a well-formed WeCom callback (it may not come from WeCom)."),
}
NEVER_REACHED = _(
    "WeCom never reached this URL. Check the URL pasted in the WeCom admin console, and that this site is "
    "reachable from the internet over HTTPS (DNS, firewall, reverse proxy)."
)

_memo: dict[tuple, float] = {}


def problem_of(reason: str, code: int | None = None) -> str:
    """The field to fix for a refusal ``reason`` (and the official sample's ``code``)."""
    if reason in PROBLEMS:
        return PROBLEMS[reason]
    if code in _AES_CODES:
        return AES_KEY
    return REQUEST


def record(tenant_id: int, kind: str, method: str, reason: str = "", code: int | None = None) -> None:
    """Note one answered callback request (``reason`` empty when accepted), throttled and bounded as
    the module says. Never raises: the callback's answer must not depend on it."""
    if reason in _UNRECORDED or (reason and not callbacks.endpoint_known(tenant_id, kind)):
        return
    # Throttled by what the page shows (the field to fix), not by the exact reason: the many ways a
    # wrong key garbles a message are one outcome.
    outcome = problem_of(reason, code) if reason else ""
    key = (tenant_id, kind, method, outcome)
    now = time.monotonic()
    if _memo.get(key, 0.0) > now:
        return
    if len(_memo) >= _MEMO_MAX:
        _memo.clear()
    _memo[key] = now + THROTTLE_SECONDS
    shared = f"{_CACHE_PREFIX}{tenant_id}:{kind}:{method}:{outcome or 'ok'}"
    try:
        if not cache.add(shared, 1, timeout=THROTTLE_SECONDS):
            return
        if outcome:
            # After a refusal, the next success is news: let it through at once.
            ok_key = (tenant_id, kind, method, "")
            _memo.pop(ok_key, None)
            cache.delete(f"{_CACHE_PREFIX}{tenant_id}:{kind}:{method}:ok")
        _write(tenant_id, kind, method, reason, code)
    except Exception:
        logger.exception("Could not note a callback attempt (tenant=%s kind=%s)", tenant_id, kind)


def _write(tenant_id: int, kind: str, method: str, reason: str, code: int | None) -> None:
    problem = problem_of(reason, code) if reason else ""
    try:
        with transaction.atomic():
            CallbackAttempt.objects.create(
                tenant_id=tenant_id, kind=kind, method=method, reason=f"{problem}:{reason}"[:64] if reason else ""
            )
            rows = list(
                CallbackAttempt.objects.filter(tenant_id=tenant_id, kind=kind, method=method)
                .order_by("-at", "-id")
                .values_list("id", "reason")
            )
            keep = {pk for pk, _ in rows[:KEEP]}
            newest_ok = next((pk for pk, stored in rows if not stored), None)
            if newest_ok is not None:
                keep.add(newest_ok)
            stale = [pk for pk, _ in rows if pk not in keep]
            if stale:
                CallbackAttempt.objects.filter(pk__in=stale).delete()
    except DatabaseError:
        logger.warning("Could not note a callback attempt (tenant=%s kind=%s): database error", tenant_id, kind)


def forget_throttle(**kwargs) -> None:
    """Drop this process's memo (tests, and after a configuration is saved: the next outcome is news)."""
    _memo.clear()


post_save.connect(forget_throttle, sender=WeComConfig, dispatch_uid="wecom_callback_attempts_forget")


def summary(tenant_id: int) -> list[dict]:
    """Per callback URL kind: its label, its recent attempts (newest first), each with ``ok``, ``at``,
    ``method`` and, when refused, ``field`` and ``advice``; and ``never_reached`` when there are none."""
    attempts = {kind: [] for kind in CallbackEvent.Kind.values}
    for attempt in CallbackAttempt.objects.filter(tenant_id=tenant_id).order_by("-at", "-id"):
        problem = attempt.reason.split(":", 1)[0] if attempt.reason else ""
        attempts.setdefault(attempt.kind, []).append(
            {
                "ok": not attempt.reason,
                "at": attempt.at,
                "method": attempt.get_method_display(),
                "field": problem,
                "advice": ADVICE.get(problem, ADVICE[REQUEST]) if problem else "",
            }
        )
    return [
        {
            "kind": kind,
            "label": CallbackEvent.Kind(kind).label,
            "attempts": attempts.get(kind, []),
            "never_reached": not attempts.get(kind),
            "never_reached_advice": NEVER_REACHED,
        }
        for kind in CallbackEvent.Kind.values
    ]

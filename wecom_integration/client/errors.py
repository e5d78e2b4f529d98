"""Errors raised by the WeCom client.

Every error carries ``errcode``, ``errmsg``, ``path`` and the secret ``kind``, and none of them ever
contains a secret or an access token: errmsg is scrubbed before it gets here, and network errors are
rebuilt from scratch instead of wrapping requests' exceptions (their text contains the request URL,
whose query carries ``access_token`` or ``corpsecret``).

``args`` always equal the constructor's positional arguments, so the errors survive pickling and
Celery's JSON result serialisation, which rebuild them as ``cls(*args)``.

Error codes: https://developer.work.weixin.qq.com/document/path/90313
"""

import re

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

SECRET_KIND_LABELS = {
    # The same words as WeComConfig's field labels, so the admin recognises the field to fix.
    "app": _("app Secret"),
    "contacts": _("contact Secret (通讯录同步Secret)"),
    "customers": _("customer Secret (客户联系Secret)"),
    "approvals": _("approval Secret (审批应用Secret)"),
}

IP_IN_ERRMSG = re.compile(r"from ip:\s*([0-9A-Fa-f.:]+[0-9A-Fa-f])")


def kind_label(kind):
    return SECRET_KIND_LABELS.get(kind, kind or "")


class WeComError(Exception):
    """Base of every client error; ``errcode`` is None when WeCom gave no answer."""

    def __init__(self, errcode=None, errmsg="", path="", kind=None):
        self.errcode = errcode
        self.errmsg = errmsg or ""
        self.path = path or ""
        self.kind = kind
        super().__init__(errcode, self.errmsg, self.path, kind)

    def __str__(self):
        where = self.path or "WeCom"
        if self.errcode is None:
            return f"{where}: {self.errmsg}"
        return f"{where}: errcode {self.errcode}: {self.errmsg}"

    def __repr__(self):
        return f"{type(self).__name__}(errcode={self.errcode!r}, path={self.path!r}, errmsg={self.errmsg!r})"


class WeComNetworkError(WeComError):
    """No usable answer: connection refused, timeout, HTTP error status or a body that is not JSON.

    ``retryable`` is False when resending could repeat an action WeCom may already have taken.
    """

    retryable = True

    @classmethod
    def build(cls, errmsg, path, kind, *, retryable=True):
        exc = cls(None, errmsg, path, kind)
        exc.retryable = retryable
        return exc


class WeComRateLimited(WeComError):
    """WeCom's frequency/concurrency limit (45009, 45033) or our own per-corp budget ran out.

    ``retry_after`` is the number of seconds a Celery task should wait before trying again; ``scope`` says
    which of our own budget's windows ran out ("minute", "ip-minute", "hour", "ip-hour"), None for WeCom's.
    """

    def __init__(self, errcode=None, errmsg="", path="", kind=None, retry_after=60, scope=None):
        super().__init__(errcode, errmsg, path, kind)
        self.retry_after = retry_after
        self.scope = scope
        self.args = (errcode, self.errmsg, self.path, kind, retry_after)


class WeComConfigError(WeComError):
    """Something only the tenant's admin can fix: a wrong CorpID or Secret, an untrusted IP, a missing
    permission. ``admin_message`` says what to change, in the active language."""

    @property
    def ip(self):
        """The caller's IP WeCom reported in a 60020 errmsg ("... from ip: 1.2.3.4, ..."), or None."""
        match = IP_IN_ERRMSG.search(self.errmsg)
        return match.group(1) if match else None

    @property
    def admin_message(self):
        label = kind_label(self.kind)
        code = self.errcode
        if code == 40013:
            return gettext(
                "The CorpID is wrong. Copy it again from the WeCom admin console: "
                "My Enterprise → Enterprise Information → CorpID (我的企业 → 企业信息 → 企业ID)."
            )
        if code in (40001, 40014, 42001):
            return gettext(
                "WeCom rejected the %(label)s. It is wrong or was reset: copy it again from the WeCom "
                "admin console and save it here."
            ) % {"label": label}
        if code == 60020:
            if self.ip:
                return gettext(
                    "WeCom refuses calls from this server's IP address %(ip)s. Add %(ip)s to the app's "
                    "trusted IPs (企业可信IP) in the WeCom admin console."
                ) % {"ip": self.ip}
            return gettext(
                "WeCom refuses calls from this server's IP address. Add the server's public IP to the "
                "app's trusted IPs (企业可信IP) in the WeCom admin console."
            )
        if code == 48009:
            return gettext(
                "WeCom does not allow the %(label)s to call %(path)s: since 2022 the contact-sync Secret, "
                "called from a new IP, may only list ids. The sync then reads names and departments with "
                "the app Secret, within the app's visible range (可见范围): enter the app Secret and give "
                "the app the departments it must see."
            ) % {"label": label, "path": self.path}
        if code == 48002:
            return gettext(
                "The %(label)s has no permission for %(path)s. Check that the Secret entered is the one "
                "for this feature, and that the API is enabled for it in the WeCom admin console."
            ) % {"label": label, "path": self.path}
        if code == 60011:
            return gettext(
                "The member or department is outside the app's visible range. Widen the app's visible "
                "range (可见范围) in the WeCom admin console."
            )
        return gettext("WeCom refused the request (%(path)s, errcode %(errcode)s): %(errmsg)s") % {
            "path": self.path,
            "errcode": code,
            "errmsg": self.errmsg,
        }


class WeComNotConfigured(WeComConfigError):
    """The tenant's WeCom configuration lacks the CorpID or the Secret a call needs."""

    def __init__(self, kind=None, field="secret"):
        super().__init__(None, f"{field} is not configured", "", kind)
        self.field = field
        self.args = (kind, field)

    @property
    def admin_message(self):
        if self.field == "corp_id":
            return gettext("The CorpID is not filled in.")
        return gettext("The %(label)s is not filled in.") % {"label": kind_label(self.kind)}

"""Sign-in and two-step verification: the OAuth code exchange (auth/getuserinfo), the consenting member's
details (auth/getuserdetail), and two-step verification through ``auth/get_tfa_info`` / ``user/tfa_succ``
or the older ``user/authsucc``.

* the OAuth ``code`` (issue_oauth_code) is single use and lives 5 minutes; with ``snsapi_privateinfo``
  getuserinfo also answers a ``user_ticket`` (1800 s), which getuserdetail exchanges for mobile, email,
  avatar … even under the 2022 restrictions; a member outside the app's visible range gets no code;
* two-step verification through ``auth/get_tfa_info`` / ``user/tfa_succ`` with the contact-sync secret, or
  the app for its own OAuth page and members in its visible range, and the older ``user/authsucc`` for the
  contact-sync secret only, docs 99499, 99500, 99521, 90203.

Pages:

* auth/getuserinfo https://developer.work.weixin.qq.com/document/path/91023
* auth/getuserdetail https://developer.work.weixin.qq.com/document/path/95833 (doc 91122 for the old name)
* auth/get_tfa_info https://developer.work.weixin.qq.com/document/path/99499
* user/tfa_succ https://developer.work.weixin.qq.com/document/path/99500
* the two-step verification page https://developer.work.weixin.qq.com/document/path/99521
* user/authsucc https://developer.work.weixin.qq.com/document/path/90203

The client files user/tfa_succ and user/authsucc under client/api/user.py; here they sit with the codes
and tickets they share.
"""

from __future__ import annotations

import secrets

from .base import _APP, _CONTACTS, _DIRECTORY, FakeWeComError, _ApiError, _Request, _Route

OAUTH_CODE_TTL = 300
TFA_CODE_TTL = 300  # the verification page's code and the tfa_code: single use, 5 minutes (doc 99499)
USER_TICKET_TTL = 1800
OAUTH_SCOPES = ("snsapi_base", "snsapi_privateinfo")

ROUTES = {
    "user/authsucc": _Route("GET", _CONTACTS, "_api_user_authsucc"),
    "auth/get_tfa_info": _Route("POST", _DIRECTORY, "_api_auth_get_tfa_info"),
    "user/tfa_succ": _Route("POST", _DIRECTORY, "_api_user_tfa_succ"),
    "auth/getuserinfo": _Route("GET", _APP, "_api_auth_getuserinfo"),
    "auth/getuserdetail": _Route("POST", _APP, "_api_auth_getuserdetail"),
}


class OAuthAPI:
    """OAuth codes, user tickets and two-step verification.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    # ------------------------------------------------------------------ control: what WeCom hands the browser
    def issue_oauth_code(self, userid: str | None = None, openid: str | None = None,
                         scope: str = "snsapi_base") -> str:
        """The ``code`` WeCom appends to the OAuth redirect: single use, valid 5 minutes. ``scope`` is
        the authorize URL's: with ``snsapi_privateinfo`` (the member consented on WeCom's page) the
        code's getuserinfo also answers a ``user_ticket``; with ``snsapi_base`` (and the QR login) not.
        https://developer.work.weixin.qq.com/document/path/91023"""
        if (userid is None) == (openid is None):
            raise ValueError("give exactly one of userid (a member) or openid (a non-member)")
        if scope not in OAUTH_SCOPES:
            raise ValueError(f"scope must be one of {OAUTH_SCOPES}")
        if userid is not None and userid not in self.org.users:
            raise FakeWeComError(60111)
        if userid is not None and not self.org.app_sees_user(self.org.users[userid]):
            # WeCom shows a member outside the app's visible range an error page instead of redirecting: no code.
            raise FakeWeComError(60011)
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[code] = (userid, openid, self.now() + OAUTH_CODE_TTL, scope)
        return code

    def issue_tfa_code(self, userid: str) -> str:
        """A member opens the company's two-step verification page: the ``code`` WeCom appends to it.
        With ``two_step_page == "app_oauth"`` the page is the app's OAuth link and the app may exchange the
        code; otherwise only the contact-sync secret may. https://developer.work.weixin.qq.com/document/path/99521"""
        user = self.org.find_user(userid)
        if user is None:
            raise FakeWeComError(60111)
        code = secrets.token_urlsafe(32)
        with self._lock:
            self._tfa_codes[code] = (user.userid, self.two_step_page, self.now() + TFA_CODE_TTL)
        return code

    # ------------------------------------------------------------------ API: login
    def _api_auth_getuserinfo(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/91023"""
        code = request.param("code")
        if not code:
            raise _ApiError(41008)
        now = self.now()
        with self._lock:
            entry = self._codes.pop(code, None)  # single use: gone even when expired
            if entry is None or entry[2] <= now:
                raise _ApiError(40029)
            userid, openid, _, scope = entry
            if userid is None:
                return {"openid": openid}
            if scope != "snsapi_privateinfo":
                return {"userid": userid}
            ticket = secrets.token_urlsafe(48)
            self._tickets[ticket] = (userid, now + USER_TICKET_TTL)
        return {"userid": userid, "user_ticket": ticket}

    def _api_auth_getuserdetail(self, request: _Request) -> dict:
        """The consenting member's sensitive fields (userid, gender, avatar, qr_code, mobile, email,
        biz_mail, address), available under the 2022 restrictions too. The ticket lives 1800 s (84014
        after), an unknown one answers 84015.
        https://developer.work.weixin.qq.com/document/path/95833 (doc 91122 for the old name)"""
        ticket = request.json().get("user_ticket")
        with self._lock:
            entry = self._tickets.get(ticket) if isinstance(ticket, str) else None
        if entry is None:
            raise _ApiError(84015)
        userid, expires_at = entry
        if expires_at <= self.now():
            raise _ApiError(84014)
        org = self.org
        with org.lock:
            user = org.users.get(userid)
            if user is None:
                raise _ApiError(60111)
            full = org.user_json(user)
        return {"userid": userid, **{k: full[k] for k in ("gender", "avatar", "qr_code", "mobile", "email",
                                                          "biz_mail", "address")}}

    # ------------------------------------------------------------------ API: two-step verification
    def _api_user_authsucc(self, request: _Request) -> dict:
        """Two-step verification passed, the older way (seed 003): only the contact-sync secret may call it
        (the route refuses the app with 48002), and only for a member WeCom sent to the verification page
        (a code was issued for them), not for any userid. https://developer.work.weixin.qq.com/document/path/90203"""
        userid = request.param("userid")
        if not userid:
            raise _ApiError(41009)
        user = self.org.find_user(userid)
        if user is None:
            raise _ApiError(60111)
        with self._lock:
            pending = any(entry[0] == user.userid for entry in self._tfa_codes.values()) or any(
                entry[0] == user.userid for entry in self._tfa_tickets.values())
            if not pending:
                raise _ApiError(60011)
            self._end_tfa(user.userid)
        return {}

    def _api_auth_get_tfa_info(self, request: _Request) -> dict:
        """The verification page's ``code`` → ``{userid, tfa_code}`` (doc 99499). The contact-sync secret may
        exchange any page code; the app only a code of its own OAuth link (the admin set the page to it) and
        only for a member in its visible range (60011 otherwise). Codes are single use, 5 minutes.
        https://developer.work.weixin.qq.com/document/path/99499"""
        code = request.json().get("code")
        if not isinstance(code, str) or not code:
            raise _ApiError(41008)
        now = self.now()
        with self._lock:
            entry = self._tfa_codes.get(code)
            if entry is None or entry[2] <= now:
                self._tfa_codes.pop(code, None)
                raise _ApiError(40029)
            userid, page, _ = entry
            if request.kind == "app":
                if page != "app_oauth":
                    raise _ApiError(40029)  # not a code of this app's OAuth link
                user = self.org.users.get(userid)
                if user is None or not self.org.app_sees_user(user):
                    raise _ApiError(60011)
            del self._tfa_codes[code]
            tfa_code = secrets.token_urlsafe(24)
            self._tfa_tickets[tfa_code] = (userid, now + TFA_CODE_TTL)
        return {"userid": userid, "tfa_code": tfa_code}

    def _api_user_tfa_succ(self, request: _Request) -> dict:
        """Two-step verification passed, the newer way (doc 99500): ``{userid, tfa_code}`` from get_tfa_info,
        with the same credential rules. https://developer.work.weixin.qq.com/document/path/99500"""
        data = request.json()
        userid, tfa_code = data.get("userid"), data.get("tfa_code")
        if not isinstance(userid, str) or not userid:
            raise _ApiError(41009)
        if not isinstance(tfa_code, str) or not tfa_code:
            raise _ApiError(40058)
        with self._lock:
            user = self.org.find_user(userid)
            if user is None:
                raise _ApiError(60111)
            if request.kind == "app" and not self.org.app_sees_user(user):
                raise _ApiError(60011)
            entry = self._tfa_tickets.get(tfa_code)
            if entry is None or entry[1] <= self.now() or entry[0] != user.userid:
                raise _ApiError(40058)
            self._end_tfa(user.userid)
        return {}

    def _end_tfa(self, userid: str) -> None:
        self.authsucc_users.add(userid)
        self._tfa_codes = {c: e for c, e in self._tfa_codes.items() if e[0] != userid}
        self._tfa_tickets = {c: e for c, e in self._tfa_tickets.items() if e[0] != userid}

"""Sign-in: the in-WeCom OAuth redirect, the browser QR login, and the code exchange."""

from urllib.parse import quote

from wecom_integration.client.base import BaseAPI

AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"
QR_LOGIN_URL = "https://login.work.weixin.qq.com/wwlogin/sso/login"


def authorize_url(corp_id, redirect_uri, state, agent_id, scope="snsapi_base"):
    """Where to send a user inside WeCom for password-free sign-in; WeCom comes back to
    ``redirect_uri`` with ``code`` and ``state``. ``snsapi_privateinfo`` also yields a user_ticket.

    https://developer.work.weixin.qq.com/document/path/91022
    """
    # WeCom expects the parameters in this order and the fragment, as in its documented example.
    return (
        f"{AUTHORIZE_URL}?appid={quote(corp_id, safe='')}&redirect_uri={quote(redirect_uri, safe='')}"
        f"&response_type=code&scope={quote(scope, safe='')}&state={quote(state, safe='')}"
        f"&agentid={int(agent_id)}#wechat_redirect"
    )


def qr_login_url(corp_id, redirect_uri, state, agent_id):
    """The browser sign-in page with WeCom's QR code for a self-built app; WeCom comes back to
    ``redirect_uri`` (on the app's trusted domain) with ``code`` and ``state``.

    https://developer.work.weixin.qq.com/document/path/98151
    """
    return (
        f"{QR_LOGIN_URL}?login_type=CorpApp&appid={quote(corp_id, safe='')}&agentid={int(agent_id)}"
        f"&redirect_uri={quote(redirect_uri, safe='')}&state={quote(state, safe='')}"
    )


class OAuthAPI(BaseAPI):
    def authorize_url(self, redirect_uri, state, agent_id=None, scope="snsapi_base"):
        """``authorize_url`` for this client's corp. https://developer.work.weixin.qq.com/document/path/91022"""
        return authorize_url(self._client.corp_id, redirect_uri, state, self._agent_id(agent_id), scope)

    def qr_login_url(self, redirect_uri, state, agent_id=None):
        """``qr_login_url`` for this client's corp. https://developer.work.weixin.qq.com/document/path/98151"""
        return qr_login_url(self._client.corp_id, redirect_uri, state, self._agent_id(agent_id))

    def getuserinfo(self, code):
        """Exchange a sign-in ``code`` (single use, 5 minutes) for ``userid`` (+ ``user_ticket``) of a
        member, or ``openid`` of a non-member. Bad or used code: errcode 40029.

        https://developer.work.weixin.qq.com/document/path/91023
        """
        return self._get("auth/getuserinfo", {"code": code})

    def getuserdetail(self, user_ticket):
        """A member's sensitive fields (mobile, email, avatar …) from the ``user_ticket`` of a
        ``snsapi_privateinfo`` sign-in. https://developer.work.weixin.qq.com/document/path/95833
        """
        return self._post("auth/getuserdetail", {"user_ticket": user_ticket})

    def get_tfa_info(self, code):
        """The two-step verification page's ``code`` → ``{userid, tfa_code}``. The contact-sync secret may
        exchange it; the app only when the page is its own OAuth link and the member is in its visible
        range. https://developer.work.weixin.qq.com/document/path/99499
        """
        return self._post("auth/get_tfa_info", {"code": code})

"""The WeCom client's side of pages opened inside it, for demos without a phone: a stand-in JS-SDK and the chat
toolbar (聊天工具栏).

* ``GET /fake/jssdk/standin.js``: a ``wx`` object as the client's JS-SDK gives pages. ``wx.config`` and
  ``wx.agentConfig`` are checked as the client checks them: their signatures are verified by the fake against
  its current tickets and the page's URL (doc 90506, the ``#`` part left out), by a script it answers
  (``/fake/jssdk/verify.js``), so an invalid signature fails as "config:invalid signature" does in WeCom;
  ``wx.invoke("getContext" | "getCurExternalContact" | "getCurExternalChat")`` answer from the page's query:
  ``standin_entry`` (single_chat_tools, the default, or group_chat_tools), ``standin_contact`` (an
  external_userid), ``standin_chat`` (a chat_id) — what the client knows of the chat it is opened from.
  https://developer.work.weixin.qq.com/document/path/90514, /94313, /92423, /92095
* ``GET /fake/app/toolbar``: what a member sees in the client: their customers and customer groups, each with
  the page the corp configured for the chat toolbar (``set_toolbar_page``), opened as the client would.

A page uses the stand-in only where its deployment says so (the demo's ``WECOM_JSSDK_SCRIPTS``); the tests of
the sidebar inject their own ``wx``.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urldefrag, urlencode
from xml.sax.saxutils import escape

_JS = "application/javascript; charset=utf-8"
_QUOTE = {"'": "&#39;", '"': "&quot;"}
_HTML = "text/html; charset=utf-8"

_STANDIN = """(function () {
  var FAKE = %(base)s, params = new URLSearchParams(location.search), pending = {};
  function url() { return location.href.split("#")[0]; }
  function verify(kind, c, done) {
    var id = "v" + Math.random().toString(36).slice(2);
    pending[id] = done;
    var s = document.createElement("script");
    s.src = FAKE + "/fake/jssdk/verify.js?" + new URLSearchParams({kind: kind, url: url(), cb: id,
      noncestr: c.nonceStr || "", timestamp: String(c.timestamp || ""), signature: c.signature || ""});
    document.head.appendChild(s);
  }
  window.__wecomStandinVerified = function (id, ok) { var f = pending[id]; delete pending[id]; if (f) { f(ok); } };
  var state = {ready: [], errors: [], configured: false, agent: null};
  window.wx = {
    config: function (c) {
      verify("jsapi", c, function (ok) {
        if (!ok) { state.errors.forEach(function (f) { f({errMsg: "config:invalid signature"}); }); return; }
        state.configured = true; state.ready.forEach(function (f) { f(); });
      });
    },
    ready: function (f) { if (state.configured) { f(); } else { state.ready.push(f); } },
    error: function (f) { state.errors.push(f); },
    agentConfig: function (c) {
      verify("agent_config", c, function (ok) {
        if (!ok) { if (c.fail) { c.fail({errMsg: "agentConfig:invalid signature"}); } return; }
        state.agent = c.jsApiList || []; if (c.success) { c.success({errMsg: "agentConfig:ok"}); }
      });
    },
    invoke: function (name, args, cb) {
      if (!state.agent || state.agent.indexOf(name) < 0) { cb({err_msg: name + ":no permission"}); return; }
      if (name === "getContext") {
        cb({err_msg: "getContext:ok", entry: params.get("standin_entry") || "single_chat_tools"}); return; }
      if (name === "getCurExternalContact") {
        var who = params.get("standin_contact");
        cb(who ? {err_msg: "getCurExternalContact:ok", userId: who} : {err_msg: "getCurExternalContact:fail"});
        return; }
      if (name === "getCurExternalChat") {
        var chat = params.get("standin_chat");
        cb(chat ? {err_msg: "getCurExternalChat:ok", chatId: chat} : {err_msg: "getCurExternalChat:fail"});
        return; }
      cb({err_msg: name + ":fail, not in the stand-in client"});
    }
  };
})();
"""

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>企业微信 · 聊天工具栏 (fake)</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.8em 1em;margin:.8em 0}}.muted{{color:#777}}
li{{margin:.2em 0}}</style></head><body>
<h1>企业微信 · 聊天工具栏
<small class="muted">(fake WeCom client: open the corp's toolbar page from a chat)</small></h1>
{body}</body></html>"""


def _with(page: str, params: dict) -> str:
    return page + ("&" if "?" in page else "?") + urlencode(params)


def _signature(ticket: str, noncestr: str, timestamp: str, url: str) -> str:
    plain = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={urldefrag(url)[0]}"
    return hashlib.sha1(plain.encode("utf-8")).hexdigest()


class ToolbarClient:
    """The stand-in client. A mixin of FakeWeCom (core.py): state lives on FakeWeCom."""

    toolbar_page: str | None = None
    toolbar_featured: tuple[str, ...] = ()

    def set_toolbar_page(self, url: str, featured=()) -> None:
        """The page the corp configured for the chat toolbar (客户联系 → 聊天工具栏管理 in the WeCom admin);
        ``featured`` external userids are listed first on the client's screen."""
        self.toolbar_page = url
        self.toolbar_featured = tuple(featured)

    def _toolbar(self, method: str, parts: list[str], query: dict):
        if parts == ["jssdk", "standin.js"]:
            return 200, (_STANDIN % {"base": json.dumps(self.api_base)}).encode("utf-8"), _JS
        if parts == ["jssdk", "verify.js"]:
            return 200, self._verify_js(query).encode("utf-8"), _JS
        if parts == ["app", "toolbar"]:
            return 200, self._toolbar_page().encode("utf-8"), _HTML
        return None

    def _verify_js(self, query: dict) -> str:
        def one(name):
            return (query.get(name) or [""])[0]

        kind = one("kind") if one("kind") in ("jsapi", "agent_config") else "jsapi"
        ticket = self.jsapi_ticket_value(kind)
        ok = bool(ticket) and _signature(ticket, one("noncestr"), one("timestamp"), one("url")) == one("signature")
        callback = "".join(c for c in one("cb") if c.isalnum())
        return f"window.__wecomStandinVerified({json.dumps(callback)}, {json.dumps(ok)});"

    def _toolbar_page(self) -> str:
        page = self.toolbar_page
        if not page:
            return _PAGE.format(body="<p>No toolbar page configured (set_toolbar_page).</p>")
        org = self.org
        with org.lock:
            rows = []
            first = [org.external_contacts[e] for e in self.toolbar_featured if e in org.external_contacts]
            rest = [c for c in org.external_contacts.values() if c.external_userid not in self.toolbar_featured]
            for contact in (first + rest)[:40]:
                for follow in contact.followers[:1]:
                    link = _with(page, {"standin_contact": contact.external_userid})
                    rows.append(f"<li>{escape(follow.user.name)} ↔ {escape(contact.name)} "
                                f"<a href='{escape(link, _QUOTE)}'>打开侧边栏 Open the sidebar</a></li>")
        with self._lock:
            chats = [dict(c) for c in getattr(self, "_group_chats", {}).values()]
        groups = []
        for chat in chats[:20]:
            link = _with(page, {"standin_entry": "group_chat_tools", "standin_chat": chat["chat_id"]})
            groups.append(f"<li>{escape(chat['name'])} "
                          f"<a href='{escape(link, _QUOTE)}'>打开侧边栏 Open the sidebar</a></li>")
        body = (f"<div class='card'><b>单聊 Chats with customers</b><ul>{''.join(rows) or '<li>—</li>'}</ul></div>"
                f"<div class='card'><b>客户群 Customer groups</b><ul>{''.join(groups) or '<li>—</li>'}</ul></div>")
        return _PAGE.format(body=body)

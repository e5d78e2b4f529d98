"""The app's custom menu (自定义菜单): menu/create with WeCom's button rules (1–3 buttons of up to 5 sub-buttons,
name, key and url sizes, button types), menu/get (46003 when none) and menu/delete.

https://developer.work.weixin.qq.com/document/path/90231
"""

from __future__ import annotations

import copy

from .base import _APP, _ApiError, _Request, _Route

MENU_TYPES = frozenset(("click", "view", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
                        "pic_photo_or_album", "pic_weixin", "location_select", "view_miniprogram"))

ROUTES = {
    "menu/create": _Route("POST", _APP, "_api_menu_create"),
    "menu/get": _Route("GET", _APP, "_api_menu_get"),
    "menu/delete": _Route("GET", _APP, "_api_menu_delete"),
}


class MenuAPI:
    """The app's menu.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    def _agentid_param(self, request: _Request) -> int:
        raw = request.param("agentid")
        if not raw:
            raise _ApiError(41011)
        if not raw.isdigit() or int(raw) != self.agent_id:
            raise _ApiError(40056)
        return int(raw)

    def _api_menu_create(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90231"""
        agentid = self._agentid_param(request)
        buttons = request.json().get("button")
        if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            raise _ApiError(40016)
        for button in buttons:
            if not isinstance(button, dict):
                raise _ApiError(40017)
            _check_button(button, top=True)
            subs = button.get("sub_button")
            if subs:
                if not isinstance(subs, list) or len(subs) > 5:
                    raise _ApiError(40023)
                for sub in subs:
                    if not isinstance(sub, dict):
                        raise _ApiError(40024)
                    if sub.get("sub_button"):
                        raise _ApiError(40022)
                    _check_button(sub, top=False)
        with self._lock:
            self.menus[agentid] = {"button": copy.deepcopy(buttons)}
        return {}

    def _api_menu_get(self, request: _Request) -> dict:
        agentid = self._agentid_param(request)
        with self._lock:
            menu = self.menus.get(agentid)
        if menu is None:
            raise _ApiError(46003)
        return copy.deepcopy(menu)

    def _api_menu_delete(self, request: _Request) -> dict:
        agentid = self._agentid_param(request)
        with self._lock:
            self.menus.pop(agentid, None)
        return {}


def _check_button(button: dict, top: bool) -> None:
    """Menu button rules: names ≤16 bytes (top) or ≤40 (sub), keys ≤128, urls ≤1024."""
    name = button.get("name")
    name_limit = 16 if top else 40
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > name_limit:
        raise _ApiError(40018 if top else 40025)
    if top and button.get("sub_button"):
        return
    kind = button.get("type")
    if kind not in MENU_TYPES:
        raise _ApiError(40017 if top else 40024)
    if kind == "view":
        url = button.get("url")
        if not isinstance(url, str) or not url or len(url.encode("utf-8")) > 1024:
            raise _ApiError(40020 if top else 40027)
    elif kind != "view_miniprogram":
        key = button.get("key")
        if not isinstance(key, str) or not key or len(key.encode("utf-8")) > 128:
            raise _ApiError(40019 if top else 40026)

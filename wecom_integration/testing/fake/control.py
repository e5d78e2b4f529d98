"""The test-control face of the fake over HTTP, under ``/fake/``: the control methods (add_user, set_faults,
advance_time …) for a fake run in another process (``manage.py wecom_fake_server``), and the avatar
images member records point at, so nothing in a demo reaches a real CDN.

Not a WeCom API: answers are ``{"errcode": 0, "errmsg": "ok", …}`` or 400 with WeCom's errcode of the
refused change (FakeWeComError), 404 for an unknown control.
"""

from __future__ import annotations

import json
import struct
import zlib

from .base import _JSON, FakeWeComError, _json_bytes


def _tiny_png() -> bytes:
    """A 1×1 grey PNG, so avatar URLs in a demo resolve to the fake, never to a real CDN."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x99"))
            + chunk(b"IEND", b""))


_AVATAR_PNG = _tiny_png()


class ControlAPI:
    """The ``/fake/…`` control endpoint.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    def _control(self, method: str, path: str, query: dict, body: bytes):
        """A small HTTP face of the control methods, for a fake run in another process."""
        parts = [p for p in path[len("/fake/"):].split("/") if p]
        if method == "GET" and parts[:1] == ["avatar"]:
            return 200, _AVATAR_PNG, "image/png"
        if method == "GET":
            page = self._toolbar(method, parts, query)
            if page is not None:
                return page
        if parts[:2] == ["app", "cards"]:
            try:
                return self._card_screen(method, parts, query, body)
            except (ValueError, KeyError) as error:
                return 400, _json_bytes({"errcode": 40058, "errmsg": str(error)}), _JSON
        if parts[:2] == ["app", "approvals"]:
            try:
                return self._approval_screen(method, parts, body)
            except (ValueError, KeyError, StopIteration) as error:
                return 400, _json_bytes({"errcode": 40058, "errmsg": str(error)}), _JSON
        try:
            data = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("the body must be a JSON object")
            answer = self._control_call(method, parts, query, data)
        except FakeWeComError as error:
            return 400, _json_bytes({"errcode": error.errcode, "errmsg": error.errmsg}), _JSON
        except (ValueError, TypeError, KeyError) as error:
            return 400, _json_bytes({"errcode": 40058, "errmsg": str(error)}), _JSON
        if answer is None:
            return 404, _json_bytes({"errcode": 404, "errmsg": "not found"}), _JSON
        return 200, _json_bytes({"errcode": 0, "errmsg": "ok", **answer}), _JSON

    def _control_call(self, method: str, parts: list[str], query: dict, data: dict) -> dict | None:
        def results(items):
            return {"deliveries": [r.as_dict() for r in items]}

        route = (method, parts[0] if parts else "", len(parts))
        if route == ("POST", "users", 1):
            data = dict(data)
            return results(self.add_user(data.pop("userid"), data.pop("name"), data.pop("department", [1]),
                                         **data))
        if route == ("POST", "users", 2):
            return results(self.update_user(parts[1], **data))
        if route == ("DELETE", "users", 2):
            return results(self.delete_user(parts[1]))
        if route == ("POST", "departments", 1):
            return results(self.add_department(**data))
        if route == ("POST", "departments", 2):
            return results(self.update_department(int(parts[1]), **data))
        if route == ("DELETE", "departments", 2):
            return results(self.delete_department(int(parts[1])))
        if route == ("POST", "callbacks", 1):
            self.register_callback(data["url"], data["token"], data["encoding_aes_key"],
                                   data.get("kind", "contacts"), verify=bool(data.get("verify", False)))
            return {}
        if route == ("POST", "app_messages", 1):
            return results(self.send_app_message(data["userid"], data.get("content", "hi")))
        if route == ("POST", "external_contacts", 1):
            external_userid, items = self.add_external_contact(data["userid"], data.get("name", "客户"),
                                                               state=data.get("state", ""))
            return {"external_userid": external_userid, **results(items)}
        if route == ("POST", "card_clicks", 1):
            return results(self.click_template_card(data["userid"], data["task_id"], data["key"],
                                                    data.get("selected")))
        if route == ("GET", "cards", 1):
            return {"cards": self.cards_for((query.get("userid") or [""])[0])}
        if route == ("GET", "deliveries", 1):
            userid = (query.get("userid") or [None])[0]
            return {"deliveries": self.deliveries_for(userid) if userid else self.deliveries}
        if route == ("GET", "stats", 1):
            return self.stats()
        if route == ("POST", "faults", 1):
            if data:
                self.set_faults(**data)
            else:
                self.clear_faults()
            return {}
        if route == ("POST", "rate_limit", 1):
            self.set_rate_limit(**data)
            return {}
        if route == ("POST", "settings", 1):
            if "restricted" in data:
                self.restricted = bool(data["restricted"])
            if "rate_limits" in data:
                self.rate_limits = bool(data["rate_limits"])
            if "customer_contact" in data:
                if data["customer_contact"] not in ("secret", "app"):
                    raise ValueError('customer_contact is "secret" or "app"')
                self.customer_contact = data["customer_contact"]
            if "customer_app_authorised" in data:
                self.customer_app_authorised = bool(data["customer_app_authorised"])
            if "two_step_page" in data:
                self.two_step_page = str(data["two_step_page"])
            if "new_app" in data:
                self.new_app = data["new_app"]
            if "visible_range" in data:
                visible = data["visible_range"] or {}
                self.set_visible_range(departments=visible.get("departments") or (),
                                       users=visible.get("users") or ())
            return {}
        if route == ("POST", "oauth_code", 1):
            return {"code": self.issue_oauth_code(userid=data.get("userid"), openid=data.get("openid"),
                                                  scope=data.get("scope") or "snsapi_base")}
        if route == ("POST", "tfa_code", 1):
            return {"code": self.issue_tfa_code(data["userid"])}
        if route == ("POST", "invalidate_tokens", 1):
            self.invalidate_tokens(data.get("kind"))
            return {}
        if route == ("POST", "advance_time", 1):
            self.advance_time(float(data["seconds"]))
            return {}
        if route == ("POST", "reset_stats", 1):
            self.reset_stats()
            return {}
        return None

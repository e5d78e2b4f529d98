"""Callbacks the fake pushes to the product (接收事件/消息): the registered URL per kind, WeCom's echostr
check when an admin saves it, and pushes signed and encrypted like WeCom's, sent synchronously with its
retry policy (testing/callbacks.py builds and sends them).

* ``contacts``: change_contact events for every org mutation: members (user.py, https://developer.work.weixin.qq.com/document/path/90970)
  and departments (department.py, https://developer.work.weixin.qq.com/document/path/90971);
* ``app``: messages and events members send to the app;
* ``customers``: change_external_contact events (externalcontact.py,
  https://developer.work.weixin.qq.com/document/path/92130).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..callbacks import CallbackSender, DeliveryResult, build_event_xml, build_message_xml

CALLBACK_KINDS = ("app", "contacts", "customers")


@dataclass(frozen=True)
class _Registration:
    url: str
    token: str
    encoding_aes_key: str


class CallbackPush:
    """Callback registration and delivery.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    def register_callback(self, url: str, token: str, encoding_aes_key: str, kind: str = "contacts",
                          verify: bool = False):
        """Set the callback URL of one kind (app messages, contact changes, customer changes).
        With ``verify`` the URL must pass WeCom's echostr check first, as when an admin saves it;
        CallbackVerificationError otherwise."""
        if kind not in CALLBACK_KINDS:
            raise ValueError(f"kind must be one of {CALLBACK_KINDS}")
        response = None
        if verify:
            response = self._sender(url, token, encoding_aes_key).check_url()
        with self._lock:
            self._callbacks[kind] = _Registration(url, token, encoding_aes_key)
        return response

    def unregister_callback(self, kind: str) -> None:
        with self._lock:
            self._callbacks.pop(kind, None)

    def _sender(self, url: str, token: str, encoding_aes_key: str) -> CallbackSender:
        return CallbackSender(url, token, encoding_aes_key, self.corp_id, timeout=self.callback_timeout,
                              tries=self.callback_tries)

    def emit(self, kind: str, xml: str) -> list[DeliveryResult]:
        """Push one callback XML to the URL registered for ``kind``; [] if none is registered."""
        with self._lock:
            registration = self._callbacks.get(kind)
        if registration is None:
            return []
        senders = getattr(self._thread_senders, "by_registration", None)
        if senders is None:
            senders = self._thread_senders.by_registration = {}
        sender = senders.get(registration)
        if sender is None:
            sender = senders[registration] = self._sender(
                registration.url, registration.token, registration.encoding_aes_key
            )
        result = sender.post(xml, agent_id=None if kind == "contacts" else self.agent_id)
        with self._lock:
            self.callback_log.append((kind, xml, result))
        return [result]

    def send_app_message(self, userid: str, content: str = "hi", msg_type: str = "text",
                         **extra) -> list[DeliveryResult]:
        """A member writes to the app: push the message to the "app" callback."""
        xml = build_message_xml(self.corp_id, userid, self.agent_id, msg_type, content,
                                create_time=int(self.now()), **extra)
        return self.emit("app", xml)

    def send_app_event(self, userid: str, event: str, event_key=None, **extra) -> list[DeliveryResult]:
        """A member triggers an app event (click, view, enter_agent …): push it to the "app" callback."""
        xml = build_event_xml(self.corp_id, userid, self.agent_id, event, event_key,
                              create_time=int(self.now()), **extra)
        return self.emit("app", xml)

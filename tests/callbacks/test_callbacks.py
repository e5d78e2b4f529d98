"""The callback endpoints over HTTP: URL verification, storing once, passive replies, and every refusal.

Driven through Django's test client and, for the happy paths, over real HTTP with the fake WeCom's
CallbackSender against ``live_server``. Every refusal asserts the status AND that nothing was stored.
"""

import base64
import os
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
import requests
from Crypto.Cipher import AES
from defusedxml import ElementTree
from django.db import connection
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.factories import make_config, make_tenant
from wecom_integration.crypto import signature
from wecom_integration.events import Article, ImageReply, NewsReply, TextMessage, VideoReply, VoiceReply
from wecom_integration.messaging import inbox
from wecom_integration.models import CallbackEvent, InboxMessage, WeComUser
from wecom_integration.testing.callbacks import (
    CallbackSender,
    build_contact_user_xml,
    build_event_xml,
    build_message_xml,
)

pytestmark = pytest.mark.django_db

# wecom-facts.md, the two published vectors.
TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
CORP_ID = "wx49f0ab532d5d035a"
V1 = {
    "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
    "timestamp": "1411443780",
    "nonce": "437374425",
    "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
}
V2_QUERY = {
    "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    "timestamp": "1411525903",
    "nonce": "461056294",
}
V2_ENCRYPT = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv"
    "283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cv"
    "kKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFx"
    "dgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6G"
    "DnTbcX2e8K9QaNWHp91eBdCRxthuL0="
)
KINDS = ("app", "contacts", "customers")
CREDENTIAL_FIELDS = {
    "app": ("app_token", "app_aes_key"),
    "contacts": ("contact_token", "contact_aes_key"),
    "customers": ("customer_token", "customer_aes_key"),
}


# Helpers shared with test_callback_handling -------------------------------------------------------------


def callback_url(tenant_id, kind):
    return reverse(f"wecom_integration:callback-{kind}", kwargs={"tenant_id": tenant_id})


def sender_for(config, kind, base_url="", **kwargs):
    """A CallbackSender holding ``config``'s credentials for ``kind``."""
    token, aes_key = config.callback_credentials(kind)
    return CallbackSender(
        base_url + callback_url(config.tenant_id, kind), token, aes_key, config.corp_id, **kwargs
    )


def post_envelope(client, config, kind, params, body, **extra):
    url = callback_url(config.tenant_id, kind) + "?" + urlencode(params)
    return client.post(url, data=body, content_type="text/xml", **extra)


def deliver(client, config, kind, xml, **envelope_kwargs):
    """Post ``xml`` as WeCom would, run what the commit queues (Celery is eager), return the answer."""
    from django.test import TestCase

    params, body = sender_for(config, kind).envelope(xml, **envelope_kwargs)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return post_envelope(client, config, kind, params, body)


def signed(config, kind, encrypt, timestamp=None, nonce="123456789"):
    """Query parameters that sign ``encrypt`` correctly with ``config``'s token for ``kind``."""
    token, _ = config.callback_credentials(kind)
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    return {
        "msg_signature": signature(token, timestamp, nonce, encrypt),
        "timestamp": timestamp,
        "nonce": nonce,
    }


def seal(aes_key, raw):
    """AES-256-CBC over bytes the test laid out (and padded) itself, as base64."""
    key = base64.b64decode(aes_key + "=")
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(raw)).decode()


def layout(message, receive_id):
    return os.urandom(16) + struct.pack(">I", len(message)) + message + receive_id


def pad32(data):
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


def envelope_body(encrypt):
    return (
        f"<xml><ToUserName><![CDATA[x]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>".encode()
    )


@pytest.fixture
def tenant():
    return make_tenant("acme")


@pytest.fixture
def config(tenant):
    return make_config(tenant)


@pytest.fixture
def vector_config():
    """A tenant configured with the published vectors' Token, key and CorpID on all three URLs."""
    fields = {
        field: value
        for pair in CREDENTIAL_FIELDS.values()
        for field, value in zip(pair, (TOKEN, AES_KEY), strict=True)
    }
    return make_config(make_tenant("vec"), corp_id=CORP_ID, **fields)


# URL verification -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_get_answers_vector_1_echostr_exactly(client, vector_config, kind):
    answer = client.get(callback_url(vector_config.tenant_id, kind), V1)
    assert answer.status_code == 200
    assert answer.content == b"5927782489442352469"
    assert answer["Content-Type"].startswith("text/plain")


def test_get_with_wrong_nonce_is_refused(client, vector_config):
    answer = client.get(callback_url(vector_config.tenant_id, "app"), {**V1, "nonce": "437374424"})
    assert answer.status_code == 400
    assert b"5927782489442352469" not in answer.content


def test_get_repairs_a_plus_decoded_as_space(client, vector_config):
    query = urlencode({k: v for k, v in V1.items() if k != "echostr"}) + "&echostr=" + V1["echostr"]
    answer = client.get(callback_url(vector_config.tenant_id, "app") + "?" + query)
    assert answer.content == b"5927782489442352469"


def test_get_over_real_http(live_server, transactional_db, config):
    for kind in KINDS:
        sender = sender_for(config, kind, live_server.url)
        response = sender.check_url()
        assert response.content == response.expected_echostr.encode()


# Storing --------------------------------------------------------------------------------------------


def test_post_vector_2_is_stored_and_lands_in_the_inbox(client, settings, vector_config):
    settings.WECOM = {"CALLBACK_TIMESTAMP_WINDOW": 10**10}
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{V2_ENCRYPT}]]></Encrypt>"
        "<AgentID><![CDATA[1]]></AgentID></xml>"
    ).encode()
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        answer = post_envelope(client, vector_config, "app", V2_QUERY, body)
    assert answer.status_code == 200
    assert answer.content == b"success"
    event = CallbackEvent.objects.get()
    assert (event.kind, event.msg_type, event.from_user, event.dedupe_key) == (
        "app",
        "text",
        "messense",
        "msg:4363689963896700987",
    )
    assert event.status == CallbackEvent.Status.HANDLED
    message = InboxMessage.objects.get()
    assert (message.wecom_userid, message.direction, message.content) == ("messense", "in", "test")


def test_vector_2_is_stale_without_a_wider_window(client, vector_config):
    body = f"<xml><Encrypt><![CDATA[{V2_ENCRYPT}]]></Encrypt></xml>".encode()
    answer = post_envelope(client, vector_config, "app", V2_QUERY, body)
    assert answer.status_code == 400
    assert CallbackEvent.objects.count() == 0


def test_same_delivery_twice_is_stored_and_handled_once(client, config):
    xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content="hello", msg_id=42)
    params, body = sender_for(config, "app").envelope(xml)
    from django.test import TestCase

    for _ in range(2):
        with TestCase.captureOnCommitCallbacks(execute=True):
            answer = post_envelope(client, config, "app", params, body)
        assert answer.status_code == 200
    event = CallbackEvent.objects.get()
    assert event.attempts == 1
    assert InboxMessage.objects.filter(event=event).count() == 1


def test_create_then_update_in_the_same_second_are_two_events(client, config):
    now = int(time.time())
    create = build_contact_user_xml(config.corp_id, "create_user", {"userid": "li", "name": "Li"}, now)
    update = build_contact_user_xml(config.corp_id, "update_user", {"userid": "li", "position": "PM"}, now)
    assert deliver(client, config, "contacts", create).status_code == 200
    assert deliver(client, config, "contacts", update).status_code == 200
    assert list(CallbackEvent.objects.order_by("id").values_list("change_type", flat=True)) == [
        "create_user",
        "update_user",
    ]
    user = WeComUser.objects.get(tenant=config.tenant, userid="li")
    assert (user.name, user.position) == ("Li", "PM")


def test_unknown_types_are_stored_not_dropped(client, config):
    xml = build_event_xml(config.corp_id, "zhangsan", config.agent_id, "brand_new_event", Foo="bar")
    answer = deliver(client, config, "app", xml)
    assert answer.status_code == 200
    event = CallbackEvent.objects.get()
    assert event.event == "brand_new_event"
    assert event.status == CallbackEvent.Status.HANDLED
    assert "<Foo><![CDATA[bar]]></Foo>" in event.xml


def test_post_over_real_http_stores_and_handles(live_server, transactional_db, config):
    sender = sender_for(config, "contacts", live_server.url)
    xml = build_contact_user_xml(
        config.corp_id, "create_user", {"userid": "wang", "name": "王五", "department": [1]}
    )
    result = sender.post(xml)
    assert (result.status, result.body, result.attempts) == (200, "success", 1)
    # Eager Celery ran the handling right after the INSERT committed, before the answer went out.
    event = CallbackEvent.objects.get()
    assert event.status == CallbackEvent.Status.HANDLED
    assert WeComUser.objects.get(tenant=config.tenant, userid="wang").name == "王五"
    # WeCom retrying the same delivery (even re-signed with a fresh nonce) gets 200 and stores nothing.
    params, body = sender.envelope(xml, timestamp=int(time.time()), nonce="555")
    assert sender.post_envelope(params, body).status == 200
    assert sender.post_envelope(params, body).status == 200
    assert CallbackEvent.objects.count() == 1


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="SQLite's shared in-memory test database locks whole tables"
)
def test_concurrent_duplicates_over_real_http_store_one_row(live_server, transactional_db, config):
    sender = sender_for(config, "app", live_server.url)
    xml = build_message_xml(config.corp_id, "zhao", config.agent_id, content="once", msg_id=777)
    params, body = sender.envelope(xml)

    def post(_):
        return requests.post(sender.url, params=params, data=body, timeout=10).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(post, range(8)))
    assert statuses == [200] * 8
    assert CallbackEvent.objects.filter(dedupe_key="msg:777").count() == 1
    assert InboxMessage.objects.filter(direction="in").count() == 1


# Passive replies -------------------------------------------------------------------------------------


def _reply_fields(sender, answer):
    plain = sender.open_reply(answer.content)
    assert plain is not None
    return ElementTree.fromstring(plain)


def test_auto_reply_is_an_encrypted_passive_reply(client, config):
    config.auto_reply = "收到，我们尽快回复 <b>&</b>"
    config.save()
    xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content="在吗")
    answer = deliver(client, config, "app", xml)
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("application/xml")
    root = _reply_fields(sender_for(config, "app"), answer)
    assert root.findtext("ToUserName") == "zhangsan"
    assert root.findtext("FromUserName") == config.corp_id
    assert root.findtext("MsgType") == "text"
    assert root.findtext("Content") == "收到，我们尽快回复 <b>&</b>"
    conversation = list(inbox.conversation(config.tenant_id, "zhangsan").values_list("direction", "content"))
    assert conversation == [("in", "在吗"), ("out", "收到，我们尽快回复 <b>&</b>")]


def test_a_retried_delivery_gets_the_same_reply(client, config):
    config.auto_reply = "first answer"
    config.save()
    xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content="hi", msg_id=9)
    sender = sender_for(config, "app")
    params, body = sender.envelope(xml)
    assert _reply_fields(sender, post_envelope(client, config, "app", params, body)).findtext("Content") == (
        "first answer"
    )
    config.auto_reply = "changed meanwhile"
    config.save()
    again = post_envelope(client, config, "app", params, body)
    assert _reply_fields(sender, again).findtext("Content") == "first answer"
    assert CallbackEvent.objects.count() == 1


def test_no_auto_reply_for_events_or_without_text(client, config):
    config.auto_reply = "hello"
    config.save()
    event = build_event_xml(config.corp_id, "zhangsan", config.agent_id, "click", event_key="MENU_1")
    assert deliver(client, config, "app", event).content == b"success"
    image = build_message_xml(
        config.corp_id, "zhangsan", config.agent_id, "image", PicUrl="http://x/1.png", MediaId="m1"
    )
    assert deliver(client, config, "app", image).content == b"success"


@pytest.mark.parametrize(
    "reply, expect",
    [
        (ImageReply("media-1"), {"MsgType": "image", "Image/MediaId": "media-1"}),
        (VoiceReply("voice-1"), {"MsgType": "voice", "Voice/MediaId": "voice-1"}),
        (
            VideoReply("video-1", "标题", "说明"),
            {
                "MsgType": "video",
                "Video/MediaId": "video-1",
                "Video/Title": "标题",
                "Video/Description": "说明",
            },
        ),
        (
            NewsReply(
                [Article("Title 1", "Desc", "https://e.com/1", "https://e.com/1.png"), Article("Title 2")]
            ),
            {
                "MsgType": "news",
                "ArticleCount": "2",
                "Articles/item/Title": "Title 1",
                "Articles/item/Url": "https://e.com/1",
                "Articles/item/PicUrl": "https://e.com/1.png",
            },
        ),
        ({"type": "text", "content": "from a dict"}, {"MsgType": "text", "Content": "from a dict"}),
    ],
)
def test_reply_handler_answers_every_passive_type(client, config, reply, expect):
    def handler(event, config):
        return reply if isinstance(event, TextMessage) and event.content == "menu" else None

    inbox.register_reply_handler(handler)
    try:
        xml = build_message_xml(config.corp_id, "lisi", config.agent_id, content="menu")
        answer = deliver(client, config, "app", xml)
    finally:
        inbox.unregister_reply_handler(handler)
    root = _reply_fields(sender_for(config, "app"), answer)
    for path, value in expect.items():
        assert root.findtext(path) == value, path
    assert InboxMessage.objects.filter(direction="out").count() == 1


def test_failing_or_invalid_reply_handler_costs_nothing(client, config):
    def broken(event, config):
        raise RuntimeError("boom")

    def invalid(event, config):
        return NewsReply([])  # WeCom accepts 1 to 8 articles

    inbox.register_reply_handler(broken)
    inbox.register_reply_handler(invalid)
    try:
        answer = deliver(client, config, "app", build_message_xml(config.corp_id, "lisi", config.agent_id))
    finally:
        inbox.unregister_reply_handler(broken)
        inbox.unregister_reply_handler(invalid)
    assert (answer.status_code, answer.content) == (200, b"success")
    assert CallbackEvent.objects.get().status == CallbackEvent.Status.HANDLED


def test_passive_reply_over_real_http(live_server, transactional_db, config):
    config.auto_reply = "auto"
    config.save()
    sender = sender_for(config, "app", live_server.url)
    result = sender.post(build_message_xml(config.corp_id, "wu", config.agent_id, content="hey"))
    assert result.status == 200
    assert ElementTree.fromstring(sender.open_reply(result.body)).findtext("Content") == "auto"


# Refusals: each one answers 4xx and stores nothing ----------------------------------------------------


def assert_refused(answer, status=400):
    assert answer.status_code == status, answer.content
    assert CallbackEvent.objects.count() == 0
    assert b"Traceback" not in answer.content


def good_envelope(config, kind="contacts", **kwargs):
    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": "u1", "name": "U"})
    return sender_for(config, kind).envelope(xml, **kwargs)


def test_good_envelope_is_accepted(client, config):
    # The control for the refusals below: the same envelope untouched is stored.
    params, body = good_envelope(config)
    assert post_envelope(client, config, "contacts", params, body).status_code == 200
    assert CallbackEvent.objects.count() == 1


def test_refuses_bad_signature(client, config):
    params, body = good_envelope(config)
    params["msg_signature"] = "0" * 40
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_missing_signature(client, config):
    params, body = good_envelope(config)
    del params["msg_signature"]
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_stale_timestamp(client, config):
    params, body = good_envelope(config, timestamp=int(time.time()) - 3600)
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_timestamp_from_the_future(client, config):
    params, body = good_envelope(config, timestamp=int(time.time()) + 3600)
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_malformed_timestamp(client, config):
    # Correctly signed over the malformed value, so only the timestamp check can refuse it.
    params, body = good_envelope(config, timestamp="17e8")
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_missing_timestamp(client, config):
    params, body = good_envelope(config)
    del params["timestamp"]
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_repeated_parameters(client, config):
    params, body = good_envelope(config)
    url = callback_url(config.tenant_id, "contacts") + "?" + urlencode(params) + "&nonce=1"
    assert_refused(client.post(url, data=body, content_type="text/xml"))


@pytest.mark.parametrize(
    "extra",
    ["&nonce=1", "&nonce=%31", "&nonce=1+"],
    ids=["plain", "percent-encoded", "plus"],
)
def test_refuses_a_parameter_given_twice_however_it_is_spelled(client, config, extra):
    """The plain query WeCom sends is split without unquoting; one that needs unquoting goes through
    parse_qsl. Either way a repeated parameter is refused and nothing is stored."""
    params, body = good_envelope(config)
    url = callback_url(config.tenant_id, "contacts") + "?" + urlencode(params) + extra
    assert_refused(client.post(url, data=body, content_type="text/xml"))
    assert not CallbackEvent.objects.exists()


@pytest.mark.parametrize("separator", ["&", "&x=%31&"], ids=["plain", "percent-encoded"])
def test_refuses_more_than_64_query_fields(client, config, separator):
    params, body = good_envelope(config)
    padding = separator.join(f"p{n}=1" for n in range(62))  # with WeCom's three: 65 fields at least
    url = callback_url(config.tenant_id, "contacts") + "?" + urlencode(params) + "&" + padding
    assert_refused(client.post(url, data=body, content_type="text/xml"))
    assert not CallbackEvent.objects.exists()
    # 64 fields in all are still read.
    url = callback_url(config.tenant_id, "contacts") + "?" + urlencode(params) + "&" + "&".join(
        f"p{n}=1" for n in range(61)
    )
    assert client.post(url, data=body, content_type="text/xml").status_code == 200


def test_refuses_wrong_receiveid(client, config):
    token, aes_key = config.callback_credentials("contacts")
    stranger = CallbackSender("/", token, aes_key, "wwsomeoneelse00000")
    params, body = stranger.envelope(build_contact_user_xml(config.corp_id, "create_user", {"userid": "u"}))
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_bad_padding(client, config):
    _, aes_key = config.callback_credentials("contacts")
    raw = bytearray(pad32(layout(b"<xml><a>1</a></xml>", config.corp_id.encode())))
    raw[-1] = 0  # pad value 0 is never valid
    encrypt = seal(aes_key, bytes(raw))
    assert_refused(
        post_envelope(client, config, "contacts", signed(config, "contacts", encrypt), envelope_body(encrypt))
    )


def test_refuses_inconsistent_padding(client, config):
    _, aes_key = config.callback_credentials("contacts")
    raw = bytearray(pad32(layout(b"<xml><ab>1</ab></xml>", config.corp_id.encode())))
    pad = raw[-1]
    if pad < 2:
        raw = bytearray(pad32(layout(b"<xml><abc>1</abc></xml>", config.corp_id.encode())))
        pad = raw[-1]
    raw[-2] = (pad + 1) % 33 or 1  # one pad byte differs from the others
    encrypt = seal(aes_key, bytes(raw))
    assert_refused(
        post_envelope(client, config, "contacts", signed(config, "contacts", encrypt), envelope_body(encrypt))
    )


def test_refuses_bad_base64(client, config):
    encrypt = "not*base64*at*all=="
    assert_refused(
        post_envelope(client, config, "contacts", signed(config, "contacts", encrypt), envelope_body(encrypt))
    )


def test_refuses_bad_utf8(client, config):
    _, aes_key = config.callback_credentials("contacts")
    encrypt = seal(aes_key, pad32(layout(b"<xml>\xff\xfe</xml>", config.corp_id.encode())))
    assert_refused(
        post_envelope(client, config, "contacts", signed(config, "contacts", encrypt), envelope_body(encrypt))
    )


def test_refuses_bad_utf8_body(client, config):
    params, body = good_envelope(config)
    assert_refused(post_envelope(client, config, "contacts", params, b"\xff" + body))


def test_refuses_malformed_envelope_xml(client, config):
    params, body = good_envelope(config)
    assert_refused(post_envelope(client, config, "contacts", params, body[:-6]))


def test_refuses_malformed_decrypted_xml(client, config):
    sender = sender_for(config, "contacts")
    params, body = sender.envelope("<xml><UserID>u1</xml>")
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_doctype_and_external_entity_in_envelope(client, config):
    params, body = good_envelope(config)
    xxe = b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + body
    assert_refused(post_envelope(client, config, "contacts", params, xxe))


def test_refuses_billion_laughs_in_envelope(client, config):
    params, body = good_envelope(config)
    lol = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b"<xml><Encrypt>&lol3;</Encrypt></xml>"
    )
    assert_refused(post_envelope(client, config, "contacts", params, lol))


def test_refuses_entities_inside_the_decrypted_xml(client, config):
    # Correctly encrypted and signed: only the inner parse can refuse it.
    sender = sender_for(config, "contacts")
    inner = '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]><xml><UserID>&x;</UserID></xml>'
    params, body = sender.envelope(inner)
    assert_refused(post_envelope(client, config, "contacts", params, body))


def test_refuses_two_encrypt_elements(client, config):
    params, body = good_envelope(config)
    doubled = body.replace(b"</xml>", b"<Encrypt><![CDATA[AAAA]]></Encrypt></xml>")
    assert_refused(post_envelope(client, config, "contacts", params, doubled))


def test_refuses_no_encrypt_element(client, config):
    params, _ = good_envelope(config)
    assert_refused(
        post_envelope(client, config, "contacts", params, b"<xml><ToUserName>x</ToUserName></xml>")
    )


def test_refuses_empty_body(client, config):
    params, _ = good_envelope(config)
    assert_refused(post_envelope(client, config, "contacts", params, b""))


def test_refuses_body_over_the_limit(client, settings, config):
    params, body = good_envelope(config)
    settings.WECOM = {"CALLBACK_MAX_BODY": len(body) - 1}
    assert_refused(post_envelope(client, config, "contacts", params, body), 413)


def test_refuses_by_content_length_before_reading(client, config):
    params, body = good_envelope(config)
    answer = post_envelope(client, config, "contacts", params, body, CONTENT_LENGTH=str(10**9))
    assert_refused(answer, 413)


def test_refuses_unknown_tenant(client, config):
    params, body = good_envelope(config)
    url = callback_url(config.tenant_id + 1000, "contacts") + "?" + urlencode(params)
    assert_refused(client.post(url, data=body, content_type="text/xml"), 404)
    assert client.get(callback_url(config.tenant_id + 1000, "app"), V1).status_code == 404


def test_refuses_tenant_without_that_urls_credentials(client, tenant):
    config = make_config(tenant, customer_token="", customer_aes_key="")
    sender = CallbackSender("/", "sometoken", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR", config.corp_id)
    params, body = sender.envelope("<xml/>")
    assert_refused(post_envelope(client, config, "customers", params, body), 404)


def test_refuses_disabled_configuration(client, config):
    params, body = good_envelope(config)
    config.enabled = False
    config.save()
    assert_refused(post_envelope(client, config, "contacts", params, body), 403)
    assert client.get(callback_url(config.tenant_id, "contacts"), V1).status_code == 403


def test_refuses_other_methods(client, config):
    assert client.put(callback_url(config.tenant_id, "app")).status_code == 405
    assert CallbackEvent.objects.count() == 0


def test_refusal_log_names_the_reason_not_the_secrets(client, config, caplog):
    params, body = good_envelope(config)
    params["msg_signature"] = "f" * 40
    with caplog.at_level("WARNING", logger="wecom_integration.callbacks"):
        post_envelope(client, config, "contacts", params, body)
    text = caplog.text
    assert "reason=bad_signature" in text
    token, aes_key = config.callback_credentials("contacts")
    for secret in (token, aes_key, params["nonce"], "f" * 40):
        assert secret not in text


def test_tenant_isolation(client):
    tenant_a, tenant_b = make_tenant("ta"), make_tenant("tb")
    config_a, config_b = make_config(tenant_a), make_config(tenant_b)
    # A's credentials, B's URL.
    params, body = sender_for(config_a, "contacts").envelope(
        build_contact_user_xml(config_a.corp_id, "create_user", {"userid": "spy", "name": "Spy"})
    )
    assert_refused(post_envelope(client, config_b, "contacts", params, body))
    # Even with B's Token and key copied, a message sealed for A's CorpID does not go into B.
    config_b.contact_token, config_b.contact_aes_key = config_a.contact_token, config_a.contact_aes_key
    config_b.save()
    assert_refused(post_envelope(client, config_b, "contacts", params, body))
    assert not WeComUser.objects.filter(userid="spy").exists()
    # Each URL kind has its own credentials: A's contacts pair does not open A's app URL.
    assert_refused(post_envelope(client, config_a, "app", params, body))


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=400),
    query=st.dictionaries(
        st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr"]), st.text(max_size=40), max_size=4
    ),
    method=st.sampled_from(["get", "post"]),
)
def test_garbage_never_answers_5xx_nor_stores(client, config, body, query, method):
    url = callback_url(config.tenant_id, "app")
    if method == "post":
        answer = client.post(url + "?" + urlencode(query), data=body, content_type="text/xml")
    else:
        answer = client.get(url, query)
    assert 400 <= answer.status_code < 500
    assert CallbackEvent.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["app", "contacts", "customers"])
def test_callbacks_are_exempt_from_csrf_and_store_with_a_csrf_enforcing_client(config, kind):
    """WeCom sends no CSRF token: a client that enforces CSRF checks still gets the view's own answer."""
    from django.test import Client, TestCase

    client = Client(enforce_csrf_checks=True)
    assert client.post(callback_url(config.tenant_id, kind), data=b"<xml/>", content_type="text/xml").status_code == 400
    from wecom_integration.testing.callbacks import build_contact_user_xml

    xml = build_contact_user_xml(config.corp_id, "create_user", {"userid": f"csrf-{kind}", "name": "C"})
    params, body = sender_for(config, kind).envelope(xml)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert post_envelope(client, config, kind, params, body).status_code == 200
    assert CallbackEvent.objects.filter(tenant=config.tenant, kind=kind).count() == 1

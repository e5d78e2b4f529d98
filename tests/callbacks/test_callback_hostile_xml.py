"""Hostile XML and bad padding over HTTP: the callback view refuses each with a 4xx and stores nothing.

Issue 19 moved the callback's XML parsing off defusedxml's pure-Python parser (to expat for the envelope
and hardened libxml2, through lxml, for the decrypted message); these cases show that what defusedxml refused is still
refused, in the envelope that anyone can post and in a message sealed and signed with the tenant's own
Token and key (only the inner parse can refuse that). Issue 20: a plaintext padded to 16-byte blocks
instead of WeCom's 32 is refused like any other padding fault. What is XML-shaped but harmless (the
words "<!DOCTYPE" inside a message, an XInclude element, a processing instruction) is stored as sent.
"""

import base64
import os
import struct
import time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.test import TestCase
from django.urls import reverse

from tests.factories import make_config, make_tenant
from wecom_integration.crypto import signature
from wecom_integration.models import CallbackEvent
from wecom_integration.testing.callbacks import CallbackSender, build_contact_user_xml, build_message_xml

pytestmark = pytest.mark.django_db

DTD_ATTACKS = {
    "bare doctype": "<!DOCTYPE xml>",
    "doctype after the declaration": '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xml>',
    "doctype after a comment and an instruction": "<!-- hi --><?pi x?><!DOCTYPE xml>",
    "internal subset": "<!DOCTYPE xml [<!ELEMENT xml ANY>]>",
    "entity declaration": '<!DOCTYPE xml [<!ENTITY who "admin">]>',
    "external SYSTEM entity (XXE)": '<!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    "external PUBLIC DTD": '<!DOCTYPE xml PUBLIC "-//X//EN" "http://127.0.0.1:9/x.dtd">',
    "external SYSTEM DTD": '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd">',
    "parameter entity": '<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>',
    "unparsed entity": '<!DOCTYPE xml [<!NOTATION n SYSTEM "x"><!ENTITY u SYSTEM "y" NDATA n>]>',
    "billion laughs": (
        '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
        '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>'
    ),
}


@pytest.fixture
def config():
    return make_config(make_tenant("hostile"))


def _url(config, kind):
    return reverse(f"wecom_integration:callback-{kind}", kwargs={"tenant_id": config.tenant_id})


def _sender(config, kind="contacts"):
    token, aes_key = config.callback_credentials(kind)
    return CallbackSender(_url(config, kind), token, aes_key, config.corp_id)


def _post(client, config, params, body, kind="contacts"):
    url = _url(config, kind) + "?" + urlencode(params)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(url, data=body, content_type="text/xml")


def _refused(answer, status=400, caplog=None, reason=None):
    assert answer.status_code == status, answer.content
    assert 400 <= answer.status_code < 500
    assert CallbackEvent.objects.count() == 0
    assert b"root:" not in answer.content
    if reason is not None:
        assert f"reason={reason}" in caplog.text, caplog.text


def _contact_xml(config, userid="u1"):
    return build_contact_user_xml(config.corp_id, "create_user", {"userid": userid, "name": "U"})


def _with_prolog(prolog, xml):
    # Entity references are put where an attack would use them: in the member's UserID.
    return prolog + xml.replace("<UserID><![CDATA[u1]]></UserID>", "<UserID>&who;&x;&lol4;</UserID>")


@pytest.mark.parametrize("prolog", DTD_ATTACKS.values(), ids=DTD_ATTACKS.keys())
def test_dtd_in_the_sealed_message_is_refused(client, config, prolog, caplog):
    params, body = _sender(config).envelope(_with_prolog(prolog, _contact_xml(config)))
    _refused(_post(client, config, params, body), caplog=caplog, reason="malformed_message_xml")


@pytest.mark.parametrize("prolog", DTD_ATTACKS.values(), ids=DTD_ATTACKS.keys())
def test_dtd_in_the_envelope_is_refused(client, config, prolog, caplog):
    params, body = _sender(config).envelope(_contact_xml(config))
    hostile = prolog.encode() + body.replace(b"<ToUserName>", b"<ToUserName>&who;&x;&lol4;", 1)
    _refused(_post(client, config, params, hostile), caplog=caplog, reason="forbidden_dtd")


@pytest.mark.parametrize(
    "xml",
    [
        '<xml><UserID>u1</UserID><!DOCTYPE xml [<!ENTITY e "x">]></xml>',  # a DOCTYPE past the prolog
        "<xml><UserID>&undeclared;</UserID></xml>",
        "<xml>" + "<a>" * 40 + "</a>" * 40 + "</xml>",  # deeper than any WeCom payload
        "<xml>" + "<a>" * 300 + "</a>" * 300 + "</xml>",  # past libxml2's own depth limit (256)
        "<xml><UserID>u1</xml>",
    ],
)
def test_malformed_sealed_messages_are_refused(client, config, xml):
    params, body = _sender(config).envelope(xml)
    _refused(_post(client, config, params, body))


def test_doctype_words_in_a_message_are_text(client, config):
    content = "<!DOCTYPE html> <!ENTITY x SYSTEM 'file:///etc/passwd'> &x;"
    xml = build_message_xml(config.corp_id, "zhangsan", config.agent_id, content=content)
    params, body = _sender(config, "app").envelope(xml)
    answer = _post(client, config, params, body, kind="app")
    assert answer.status_code == 200, answer.content
    assert list(CallbackEvent.objects.values_list("xml", flat=True)) == [xml]


def test_xinclude_and_instructions_are_stored_inert(client, config):
    xml = _contact_xml(config).replace(
        "<xml>",
        '<?xml-stylesheet href="file:///etc/passwd"?><xml xmlns:xi="http://www.w3.org/2001/XInclude">'
        '<xi:include href="file:///etc/passwd" parse="text"/><?php system("id"); ?>',
        1,
    )
    params, body = _sender(config).envelope(xml)
    answer = _post(client, config, params, body)
    assert answer.status_code == 200, answer.content
    row = CallbackEvent.objects.get()
    assert row.xml == xml and row.subject == "u1"
    assert "root:" not in row.xml


def test_declared_encoding_does_not_reinterpret_the_bytes(client, config):
    params, body = _sender(config).envelope(_contact_xml(config))
    declared = b'<?xml version="1.0" encoding="GBK"?>' + body  # the bytes are UTF-8 whatever it says
    assert _post(client, config, params, declared).status_code == 200
    assert CallbackEvent.objects.count() == 1


def test_envelope_in_another_encoding_is_refused(client, config):
    params, body = _sender(config).envelope(_contact_xml(config))
    gbk = body.replace(b"<ToUserName>", "<ToUserName>测试".encode(), 1).decode().encode("gbk")
    _refused(_post(client, config, params, gbk))


def test_utf16_envelope_is_refused(client, config):
    params, body = _sender(config).envelope(_contact_xml(config))
    _refused(_post(client, config, params, b"\xff\xfe" + body.decode().encode("utf-16-le")))


def test_oversize_hostile_body_is_refused_before_parsing(client, config, settings):
    params, body = _sender(config).envelope(_contact_xml(config))
    settings.WECOM = {"CALLBACK_MAX_BODY": 4096}
    bomb = DTD_ATTACKS["billion laughs"].encode() + b" " * 4096 + body
    _refused(_post(client, config, params, bomb), status=413)


# Strict padding (issue 20).


def _seal_padded_to_16(config, message: bytes) -> str:
    """``message`` laid out as WeCom does, PKCS#7-padded to 16-byte blocks so the total is 16 mod 32."""
    _, aes_key = config.callback_credentials("contacts")
    key = base64.b64decode(aes_key + "=")
    receive_id = config.corp_id.encode()
    plain = os.urandom(16) + struct.pack(">I", len(message)) + message + receive_id
    if (len(plain) + 16 - len(plain) % 16) % 32 == 0:
        message += b" " * 16
        plain = os.urandom(16) + struct.pack(">I", len(message)) + message + receive_id
    pad = 16 - len(plain) % 16
    plain += bytes([pad]) * pad
    assert len(plain) % 32 == 16
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def test_message_padded_to_16_byte_blocks_is_refused(client, config, caplog):
    encrypt = _seal_padded_to_16(config, _contact_xml(config).encode())
    token, _ = config.callback_credentials("contacts")
    timestamp, nonce = str(int(time.time())), "20260303"
    # Signed with the tenant's Token like any genuine push: only the padding is wrong.
    params = {"msg_signature": signature(token, timestamp, nonce, encrypt), "timestamp": timestamp, "nonce": nonce}
    body = _sender(config).envelope(_contact_xml(config))[1]
    start, end = body.index(b"<Encrypt><![CDATA[") + 18, body.index(b"]]></Encrypt>")
    _refused(
        _post(client, config, params, body[:start] + encrypt.encode() + body[end:]), caplog=caplog, reason="bad_padding"
    )


def test_the_signer_pads_every_length_to_32(config):
    sender = _sender(config)
    for length in range(0, 80):
        params, body = sender.envelope("<xml>" + "x" * length + "</xml>")
        start, end = body.index(b"<Encrypt><![CDATA[") + 18, body.index(b"]]></Encrypt>")
        assert len(base64.b64decode(body[start:end])) % 32 == 0

"""Fuzzing the three callback URLs: mutated bodies, query strings, headers and tenant ids.

Whatever arrives, the answer is never a 5xx, nothing is stored unless the request carried WeCom's genuine
encrypted payload with its genuine signature, a URL verification answers 200 only with the true echostr,
and every request finishes within the hypothesis deadline (a pathological input — an XML bomb, a deep
document, a huge body — would blow it). Django's test client keeps each example cheap.
"""

from datetime import timedelta
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_config, make_tenant
from wecom_integration.models import CallbackEvent
from wecom_integration.testing.callbacks import (
    CallbackSender,
    build_contact_user_xml,
    build_external_contact_xml,
    build_message_xml,
)

# A lone surrogate cannot travel in an HTTP request at all: the test client would fail, not the view.
NO_SURROGATES = st.characters(exclude_categories=("Cs",))

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

NASTY_BODIES = [
    b"",
    b"\x00" * 512,
    b"<xml>" * 5000,
    b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
    b"<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'><!ENTITY d '&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;'>]>"
    b"<xml><Encrypt>&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;</Encrypt></xml>",
    b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><xml><Encrypt>&e;</Encrypt></xml>",
    b"<xml><Encrypt><![CDATA[" + b"A" * 70_000 + b"]]></Encrypt></xml>",
    b"<xml><Encrypt><![CDATA[" + b"A" * 60_000 + b"]]></Encrypt></xml>",
    b"<xml><Encrypt></Encrypt></xml>",
    b"<xml><Encrypt>====</Encrypt><Encrypt>x</Encrypt></xml>",
    "<xml><Encrypt>中文</Encrypt></xml>".encode("utf-16"),
    b"\xef\xbb\xbf<xml><ToUserName>x</ToUserName></xml>",
    b"{\"Encrypt\": \"x\"}",
]
CONTENT_TYPES = [
    "text/xml",
    "application/xml",
    "text/xml; charset=gbk",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/json",
    "",
]


def _xml(kind, corp_id, agent_id):
    if kind == "app":
        return build_message_xml(corp_id, "fuzzer", agent_id, content="hello", msg_id=4363689963896700987)
    if kind == "customers":
        return build_external_contact_xml(corp_id, "add_external_contact", "fuzzer", "wmFuzz")
    return build_contact_user_xml(corp_id, "create_user", {"userid": "fuzzer", "name": "Fuzz", "department": [1]})


@pytest.fixture
def target(request):
    """One tenant with all three callback URLs, a genuine envelope for each, and its XML."""
    tenant = make_tenant("fuzz")
    config = make_config(tenant, auto_reply="收到")  # the app URL answers with an encrypted passive reply
    urls, envelopes = {}, {}
    for kind in ("app", "contacts", "customers"):
        token, aes_key = config.callback_credentials(kind)
        urls[kind] = f"/wecom/callback/{tenant.pk}/{kind}/"
        sender = CallbackSender("http://testserver" + urls[kind], token, aes_key, config.corp_id)
        xml = _xml(kind, config.corp_id, config.agent_id)
        params, body = sender.envelope(xml, agent_id=config.agent_id)
        echo = "echo-" + kind
        encrypted, signature = sender.crypto.encrypt(echo, params["nonce"], params["timestamp"])
        envelopes[kind] = {"params": params, "body": body, "xml": xml, "sender": sender,
                           "verify": {"msg_signature": signature, "timestamp": params["timestamp"],
                                      "nonce": params["nonce"], "echostr": encrypted}, "echo": echo}
    return tenant, urls, envelopes


# Strategies ----------------------------------------------------------------------------------------------


def _replace_at(text, index, char):
    index = index % max(1, len(text))
    return text[:index] + char + text[index + 1 :]


def value_mutations(original):
    """One query value: kept, dropped, replaced, one character changed, or repeated."""
    return st.one_of(
        st.just(original),
        st.just(original),
        st.none(),
        st.text(NO_SURROGATES, max_size=60),
        st.builds(lambda i, c: _replace_at(original, i, c), st.integers(0, 200), NO_SURROGATES),
        st.builds(lambda extra: [original, extra], st.text(NO_SURROGATES, max_size=20)),
    )


@st.composite
def query_strings(draw, params):
    if draw(st.integers(0, 9)) == 0:
        # Whatever bytes a client may put after the "?".
        return quote(draw(st.text(NO_SURROGATES, max_size=200)), safe="=&%+")
    query = []
    for name, value in params.items():
        mutated = draw(value_mutations(value))
        if mutated is None:
            continue
        for item in mutated if isinstance(mutated, list) else [mutated]:
            query.append((name, item))
    for name in draw(st.lists(st.sampled_from(["echostr", "x", "msg_signature", "", "timestamp"]), max_size=2)):
        query.append((name, draw(st.text(NO_SURROGATES, max_size=30))))
    return urlencode(query)


def _flip(body, index, mask):
    index = index % len(body)
    return body[:index] + bytes([body[index] ^ mask]) + body[index + 1 :]


def _with_encrypt(body, text):
    start, end = body.index(b"<Encrypt><![CDATA[") + 18, body.index(b"]]></Encrypt>")
    return body[:start] + text.encode("utf-8", "surrogatepass") + body[end:]


def body_mutations(body):
    return st.one_of(
        st.just(body),
        st.binary(max_size=3000),
        st.builds(lambda i, m: _flip(body, i, m), st.integers(0, 10_000), st.integers(1, 255)),
        st.builds(lambda n: body[: n % (len(body) + 1)], st.integers(0, 10_000)),
        st.builds(lambda i, b: body[: i % len(body)] + b + body[i % len(body) :], st.integers(0, 10_000),
                  st.binary(min_size=1, max_size=64)),
        st.builds(lambda t: _with_encrypt(body, t), st.text(NO_SURROGATES, max_size=400)),
        st.sampled_from(NASTY_BODIES),
    )


def headers():
    return st.fixed_dictionaries(
        {},
        optional={
            "HTTP_X_REQUEST_ID": st.text(NO_SURROGATES, max_size=200),
            "HTTP_CONTENT_ENCODING": st.sampled_from(["gzip", "deflate", "br", "identity"]),
            "HTTP_X_FORWARDED_FOR": st.text(NO_SURROGATES, max_size=60),
            "HTTP_USER_AGENT": st.text(NO_SURROGATES, max_size=100),
        },
    )


def tenant_ids(own):
    return st.one_of(st.just(own), st.just(own), st.integers(0, 2**31), st.integers(2**31, 2**80))


# Properties ---------------------------------------------------------------------------------------------


def _assert_nothing_foreign_stored(xml):
    stored = set(CallbackEvent.objects.values_list("xml", flat=True))
    assert stored <= {xml}, "something other than the genuine payload was stored"


@pytest.mark.parametrize("kind", ["contacts", "app", "customers"])
def test_mutated_posts_never_fail_and_never_store_anything_foreign(client, target, kind):
    tenant, urls, envelopes = target
    genuine = envelopes[kind]

    @FUZZ
    @given(
        tenant_id=tenant_ids(tenant.pk),
        query=query_strings(genuine["params"]),
        body=body_mutations(genuine["body"]),
        content_type=st.one_of(st.sampled_from(CONTENT_TYPES), st.text(NO_SURROGATES, max_size=40)),
        extra=headers(),
    )
    def check(tenant_id, query, body, content_type, extra):
        before = CallbackEvent.objects.count()
        url = f"/wecom/callback/{tenant_id}/{kind}/?{query}"
        response = client.generic("POST", url, body, content_type=content_type, **extra)
        assert response.status_code < 500, (response.status_code, response.content[:200])
        after = CallbackEvent.objects.count()
        if response.status_code != 200:
            assert after == before, f"a refused request ({response.status_code}) stored an event"
        else:
            assert after - before <= 1
            _assert_nothing_foreign_stored(genuine["xml"])

    check()
    _assert_nothing_foreign_stored(genuine["xml"])


def test_mutated_url_verifications_never_fail_and_echo_only_the_truth(client, target):
    tenant, urls, envelopes = target
    genuine = envelopes["contacts"]

    @FUZZ
    @given(tenant_id=tenant_ids(tenant.pk), query=query_strings(genuine["verify"]), extra=headers())
    def check(tenant_id, query, extra):
        response = client.get(f"/wecom/callback/{tenant_id}/contacts/?{query}", **extra)
        assert response.status_code < 500, (response.status_code, response.content[:200])
        if response.status_code == 200:
            assert response.content == genuine["echo"].encode()
        assert CallbackEvent.objects.count() == 0

    check()


def test_other_methods_are_refused_without_storing(client, target):
    tenant, urls, envelopes = target
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD"):
        for kind, url in urls.items():
            genuine = envelopes[kind]
            query = urlencode(genuine["params"])
            response = client.generic(method, f"{url}?{query}", genuine["body"], content_type="text/xml")
            assert response.status_code < 500
            if method != "HEAD":
                assert response.status_code in (405, 400, 403), (method, response.status_code)
    assert CallbackEvent.objects.count() == 0


def test_the_genuine_requests_pass(client, target):
    """The fuzz's baseline: unmutated, each URL stores its event once and verifies."""
    tenant, urls, envelopes = target
    for kind, url in urls.items():
        genuine = envelopes[kind]
        query = urlencode(genuine["params"])
        for _ in range(2):
            response = client.generic("POST", f"{url}?{query}", genuine["body"], content_type="text/xml")
            assert response.status_code == 200, (kind, response.content)
        verified = client.get(url, genuine["verify"])
        assert verified.status_code == 200 and verified.content == genuine["echo"].encode()
    assert CallbackEvent.objects.count() == 3

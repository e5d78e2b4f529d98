"""Decoding WeCom's answers (issue 19 item 5): msgspec reads them from the bytes, a ``user/list`` answer for
the mirror into only the keys it keeps; whatever msgspec refuses is read as ``requests`` reads it, so an
odd answer means what it meant before."""

import json
import math

import pytest
import requests
from django.core.cache import cache
from django.test import override_settings

from wecom_integration.client import WeComClient, WeComConfigError
from wecom_integration.client.api.user import ListedMember, MemberListAnswer
from wecom_integration.client.base import decode_answer
from wecom_integration.client.tokens import clear_memo
from wecom_integration.directory.services import user_fields_from_api
from wecom_integration.testing import FakeWeCom

MIRRORED = set(ListedMember.__struct_fields__)


def _answer(body: bytes, content_type="application/json; charset=UTF-8") -> requests.Response:
    """An HTTP answer as requests hands it over, holding ``body``."""
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = content_type
    response.encoding = requests.utils.get_encoding_from_headers(response.headers)
    response._content = body
    return response


def _as_requests_reads(body: bytes):
    try:
        return _answer(body).json()
    except ValueError:
        return None


def _same(a, b):
    # NaN is not equal to itself: compare what it prints as.
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)


ODD = [
    b'{"errcode": 0, "errmsg": "ok", "name": "\\ud800"}',  # a lone surrogate escape
    b'{"errcode": 0, "value": NaN}',  # not JSON, read by json.loads
    b'{"errcode": 0, "value": 1e400}',  # past a double: inf
    '{"errcode": 0, "name": "张\xff"}'.encode("utf-8", "surrogateescape")[:-1] + b"\xff\"}",  # bad UTF-8
    b'{"errcode": 0, "big": 123456789012345678901234567890}',
    b'{"errcode": 0, "a": 1, "a": 2}',
    b"\xef\xbb\xbf{\"errcode\": 0}",  # a BOM
    b"[1, 2]",
    b"",
    b"<html>bad gateway</html>",
    b'{"errcode": 0, "userlist": null}',
    b'{"errcode": 0, "userlist": [1, "x", null]}',
    b'{"errcode": 0, "userlist": [{"userid": "a\\ud800", "name": 5, "department": "1,2", "extattr": {}}]}',
]


@pytest.mark.parametrize("body", ODD)
def test_what_msgspec_refuses_is_read_as_requests_reads_it(body):
    expected = _as_requests_reads(body)
    assert _same(decode_answer(_answer(body)), expected)
    kept = decode_answer(_answer(body), MemberListAnswer)
    if not isinstance(expected, dict):
        assert _same(kept, expected)
        return
    # Read by msgspec: the answer's own keys and each member's mirrored keys, as WeCom sent them; read
    # by requests: all of it. Either way the mirror takes the same fields from each member.
    trimmed = {k: v for k, v in expected.items() if k in ("errcode", "errmsg", "userlist")}
    if isinstance(expected.get("userlist"), list) and all(isinstance(m, dict) for m in expected["userlist"]):
        trimmed["userlist"] = [{k: v for k, v in m.items() if k in MIRRORED} for m in expected["userlist"]]
    assert _same(kept, trimmed) or _same(kept, expected)
    if isinstance(kept.get("userlist"), list) and all(isinstance(m, dict) for m in kept["userlist"]):
        assert [user_fields_from_api(m) for m in kept["userlist"]] == [
            user_fields_from_api(m) for m in expected["userlist"]]


def test_numbers_and_text_decode_as_json_loads_decodes_them():
    body = json.dumps({"errcode": 0, "errmsg": "ok", "n": [0, -1, 2**63, 1.5, True, None],
                       "s": "\b\f\n\r\t\"\\/\x00\x1f\x7f\u2028é😀"}, ensure_ascii=False).encode()
    decoded = decode_answer(_answer(body))
    assert decoded == json.loads(body) and math.isclose(decoded["n"][3], 1.5)
    assert type(decoded["n"][4]) is bool


@pytest.fixture
def fake():
    cache.clear()
    clear_memo()
    server = FakeWeCom(users=40, departments=6, seed=9).start()
    # Members whose names and positions are what a JSON encoder must escape or leave alone.
    server.add_user("odd", "引号\"反斜杠\\换行\n\u2028😀", department=(2,), position="\x7f\t/")
    with override_settings(WECOM={"API_BASE": server.api_base}):
        yield server
    server.stop()
    cache.clear()
    clear_memo()


def test_list_members_gives_each_member_its_mirrored_keys_as_user_list_has_them(fake):
    client = WeComClient(fake.corp_id, fake.contact_secret, kind="contacts")
    full = client.get("user/list", {"department_id": 1, "fetch_child": 1})["userlist"]
    kept = client.user.list_members(1, fetch_child=True)
    assert len(kept) == len(fake.org.users) and any(m["userid"] == "odd" for m in kept)
    assert kept == [{k: v for k, v in m.items() if k in MIRRORED} for m in full]
    assert [user_fields_from_api(m) for m in kept] == [user_fields_from_api(m) for m in full]
    direct = client.user.list_members(2)
    assert {m["userid"] for m in direct} == {u.userid for u in fake.org.members_of(2)}


def test_list_members_leaves_out_what_a_new_app_is_not_given(fake):
    fake.restricted = True
    app = WeComClient(fake.corp_id, fake.secret, kind="app", agent_id=fake.agent_id)
    kept = app.user.list_members(1, fetch_child=True)
    assert kept and all("mobile" not in m and "email" not in m and "avatar" not in m for m in kept)
    assert all({"userid", "name", "department", "status"} <= m.keys() for m in kept)
    contacts = WeComClient(fake.corp_id, fake.contact_secret, kind="contacts")
    with pytest.raises(WeComConfigError) as caught:
        contacts.user.list_members(1)  # the 2022 rules: ids only for the contact-sync secret
    assert caught.value.errcode == 48009

"""The fake WeCom server, exercised over real HTTP the way the product's client will use it.

The fixtures ``fake_wecom`` and ``make_fake_wecom`` come from wecom_integration.testing.pytest_plugin
(registered in conftest.py).
"""

from __future__ import annotations

import collections
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from defusedxml import ElementTree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wecom_integration.crypto import WeComCrypto
from wecom_integration.testing import (
    CallbackSender,
    CallbackVerificationError,
    FakeWeCom,
    FakeWeComError,
    Org,
    build_contact_user_xml,
    build_event_xml,
    build_external_contact_xml,
    build_message_xml,
)
from wecom_integration.testing.org import SENSITIVE_USER_FIELDS

TIMEOUT = 5


class Api:
    """A minimal client: one secret kind, one session, answers as dicts."""

    def __init__(self, fake: FakeWeCom, kind: str = "contacts"):
        self.fake = fake
        self.session = requests.Session()
        secrets = {"app": fake.secret, "contacts": fake.contact_secret, "customers": fake.customer_secret}
        self.secret = secrets[kind]
        self.token = self.gettoken()["access_token"]

    def gettoken(self, corpid=None, secret=None) -> dict:
        params = {"corpid": corpid or self.fake.corp_id, "corpsecret": secret or self.secret}
        url = f"{self.fake.api_base}/cgi-bin/gettoken"
        return self.session.get(url, params=params, timeout=TIMEOUT).json()

    def get(self, api: str, token=None, **params) -> dict:
        params["access_token"] = self.token if token is None else token
        response = self.session.get(f"{self.fake.api_base}/cgi-bin/{api}", params=params, timeout=TIMEOUT)
        assert response.status_code == 200
        return response.json()

    def post(self, api: str, body=None, token=None, **params) -> dict:
        params["access_token"] = self.token if token is None else token
        response = self.session.post(f"{self.fake.api_base}/cgi-bin/{api}", params=params, json=body,
                                     timeout=TIMEOUT)
        assert response.status_code == 200
        return response.json()

    def send(self, **body) -> dict:
        body.setdefault("agentid", self.fake.agent_id)
        body.setdefault("msgtype", "text")
        if body["msgtype"] == "text":
            body.setdefault("text", {"content": "你好"})
        return self.post("message/send", body)


def active_userids(fake, count=None):
    ids = [u.userid for u in fake.org.users.values() if u.status == 1]
    return ids if count is None else ids[:count]


def inactive_userid(fake):
    return next(u.userid for u in fake.org.users.values() if u.status != 1)


# ---------------------------------------------------------------------------------------- tokens
def test_gettoken_reuses_the_token_until_it_expires(make_fake_wecom):
    fake = make_fake_wecom(users=10, departments=3, token_ttl=100)
    api = Api(fake)
    first = api.gettoken()
    fake.advance_time(30)
    second = api.gettoken()
    assert second["access_token"] == first["access_token"]
    assert first["expires_in"] == 100
    assert 0 < second["expires_in"] <= 70
    assert api.get("user/get", userid=next(iter(fake.org.users)))["errcode"] == 0

    fake.advance_time(71)
    assert api.get("user/get", userid=next(iter(fake.org.users)))["errcode"] == 42001
    third = api.gettoken()
    assert third["access_token"] != first["access_token"]
    assert api.get("user/get", token=third["access_token"], userid=next(iter(fake.org.users)))["errcode"] == 0
    assert fake.gettoken_calls["contacts"] == 4


def test_each_secret_has_its_own_token(fake_wecom):
    tokens = {kind: Api(fake_wecom, kind).token for kind in ("app", "contacts", "customers")}
    assert len(set(tokens.values())) == 3
    assert fake_wecom.gettoken_calls == {"app": 1, "contacts": 1, "customers": 1}


def test_gettoken_errors(fake_wecom):
    api = Api(fake_wecom)
    assert api.gettoken(secret="W" * 43)["errcode"] == 40001
    assert api.gettoken(corpid="ww0000000000000000")["errcode"] == 40013
    base = f"{fake_wecom.api_base}/cgi-bin/gettoken"
    no_corp = requests.get(base, params={"corpsecret": api.secret}, timeout=TIMEOUT).json()
    no_secret = requests.get(base, params={"corpid": fake_wecom.corp_id}, timeout=TIMEOUT).json()
    assert (no_corp["errcode"], no_secret["errcode"]) == (41002, 41004)


def test_missing_unknown_and_invalidated_tokens(fake_wecom):
    api = Api(fake_wecom)
    url = f"{fake_wecom.api_base}/cgi-bin/department/simplelist"
    assert requests.get(url, timeout=TIMEOUT).json()["errcode"] == 41001
    assert api.get("department/simplelist", token="not-a-token")["errcode"] == 40014

    old = api.token
    fake_wecom.invalidate_tokens("contacts")
    answer = api.get("department/simplelist")
    assert answer["errcode"] == 40014
    assert "hint:" in answer["errmsg"]  # like WeCom: clients must key on errcode only
    fresh = api.gettoken()["access_token"]
    assert fresh != old
    assert api.get("department/simplelist", token=fresh)["errcode"] == 0


def test_secret_kinds_are_enforced(fake_wecom):
    app, contacts, customers = (Api(fake_wecom, k) for k in ("app", "contacts", "customers"))
    someone = next(u for u in fake_wecom.org.users.values() if u.follows)
    # The app secret reads the directory within its visible range (the whole corp by default).
    assert app.get("user/list", department_id=1)["errcode"] == 0
    assert app.get("department/list")["errcode"] == 0
    assert customers.get("user/list", department_id=1)["errcode"] == 48002
    assert app.post("user/list_id", {})["errcode"] == 48009
    assert customers.post("user/list_id", {})["errcode"] == 48009
    assert contacts.send(touser=someone.userid)["errcode"] == 48002
    assert contacts.get("externalcontact/list", userid=someone.userid)["errcode"] == 48002
    assert customers.get("externalcontact/list", userid=someone.userid)["errcode"] == 0
    # The app reads customers only once listed under 客户联系 → 可调用接口的应用 (doc 92994).
    assert app.get("externalcontact/list", userid=someone.userid)["errcode"] == 48002
    fake_wecom.customer_app_authorised = True
    assert app.get("externalcontact/list", userid=someone.userid)["errcode"] == 0
    assert app.get("user/get", userid=someone.userid)["errcode"] == 0
    assert app.get("department/simplelist")["errcode"] == 0
    assert contacts.get("user/list", department_id=1)["errcode"] == 0


def test_answers_are_utf8_json_without_ascii_escapes(fake_wecom):
    api = Api(fake_wecom)
    response = api.session.get(f"{fake_wecom.api_base}/cgi-bin/department/get",
                               params={"access_token": api.token, "id": 1}, timeout=TIMEOUT)
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    name = fake_wecom.org.departments[1].name
    assert name.encode("utf-8") in response.content
    assert b"\\u" not in response.content


def test_post_api_called_with_get_is_refused(fake_wecom):
    assert Api(fake_wecom).get("user/list_id")["errcode"] == 43002


def test_unknown_api_path_is_404(fake_wecom):
    response = requests.get(f"{fake_wecom.api_base}/cgi-bin/no/such/api", timeout=TIMEOUT)
    assert response.status_code == 404


# ---------------------------------------------------------------------------------------- contacts
def test_list_id_pages_cover_every_membership_exactly_once(make_fake_wecom):
    fake = make_fake_wecom(users=500, departments=30, seed=3)
    api = Api(fake)
    rows, cursor, pages = [], "", 0
    while True:
        answer = api.post("user/list_id", {"cursor": cursor, "limit": 37})
        assert answer["errcode"] == 0
        assert len(answer["dept_user"]) <= 37
        rows += [(r["userid"], r["department"]) for r in answer["dept_user"]]
        pages += 1
        cursor = answer["next_cursor"]
        if not cursor:
            break
        assert pages < 100
    expected = [(u.userid, d) for u in fake.org.users.values() for d in u.departments]
    assert len(rows) == len(set(rows))
    assert sorted(rows) == sorted(expected)
    assert any(len(u.departments) > 1 for u in fake.org.users.values())


def test_list_id_continues_when_a_member_leaves_between_pages(make_fake_wecom):
    fake = make_fake_wecom(users=100, departments=10, seed=4)
    api = Api(fake)
    first = api.post("user/list_id", {"limit": 10})
    seen = [r["userid"] for r in first["dept_user"]]
    next_user = next(u for u in fake.org.users if u not in seen)
    fake.delete_user(next_user)
    rows, cursor = first["dept_user"], first["next_cursor"]
    while cursor:
        answer = api.post("user/list_id", {"cursor": cursor, "limit": 10})
        rows += answer["dept_user"]
        cursor = answer["next_cursor"]
    pairs = [(r["userid"], r["department"]) for r in rows]
    assert len(pairs) == len(set(pairs))
    assert {p[0] for p in pairs} == set(fake.org.users) | set(seen)
    assert next_user not in {p[0] for p in pairs}


def test_list_id_validates_limit_and_cursor(fake_wecom):
    api = Api(fake_wecom)
    assert api.post("user/list_id", {"limit": 10001})["errcode"] == 40058
    assert api.post("user/list_id", {"limit": 0})["errcode"] == 40058
    assert api.post("user/list_id", {"cursor": "garbage!!"})["errcode"] == 40058
    assert len(api.post("user/list_id", {})["dept_user"]) == sum(
        len(u.departments) for u in fake_wecom.org.users.values())
    response = api.session.post(f"{fake_wecom.api_base}/cgi-bin/user/list_id",
                                params={"access_token": api.token}, data=b"{not json", timeout=TIMEOUT)
    assert response.json()["errcode"] == 47001


def test_department_list_returns_the_subtree_parents_first(make_fake_wecom):
    fake = make_fake_wecom(users=50, departments=40, seed=5)
    api = Api(fake)
    everything = api.get("department/list")["department"]
    assert len(everything) == 40
    assert {"id", "name", "name_en", "department_leader", "parentid", "order"} <= set(everything[0])
    parent_of = {d["id"]: d["parentid"] for d in everything}
    branch = next(d["id"] for d in everything if d["parentid"] == 1
                  and any(p == d["id"] for p in parent_of.values()))
    sub = api.get("department/list", id=branch)["department"]
    assert sub[0]["id"] == branch
    ids = {d["id"] for d in sub}

    def under(dept_id):
        while dept_id:
            if dept_id == branch:
                return True
            dept_id = parent_of[dept_id]
        return False

    assert ids == {d for d in parent_of if under(d)}
    positions = {d["id"]: i for i, d in enumerate(sub)}
    assert all(positions[d["parentid"]] < positions[d["id"]] for d in sub[1:])
    simple = api.get("department/simplelist", id=branch)["department_id"]
    assert [d["id"] for d in simple] == [d["id"] for d in sub]
    assert api.get("department/list", id=99999)["errcode"] == 60003


def test_user_list_direct_members_and_fetch_child(fake_wecom):
    api = Api(fake_wecom)
    org = fake_wecom.org
    direct = api.get("user/list", department_id=1)["userlist"]
    assert {u["userid"] for u in direct} == {u.userid for u in org.departments[1].members}
    everyone = api.get("user/list", department_id=1, fetch_child=1)["userlist"]
    assert sorted(u["userid"] for u in everyone) == sorted(org.users)
    member = everyone[0]
    assert {"userid", "name", "department", "mobile", "email", "status", "main_department"} <= set(member)
    simple = api.get("user/simplelist", department_id=1, fetch_child=1)["userlist"]
    assert sorted(u["userid"] for u in simple) == sorted(org.users)
    assert "mobile" not in simple[0]
    assert api.get("user/list", department_id=4242)["errcode"] == 60003


def test_user_get(fake_wecom):
    api = Api(fake_wecom)
    user = next(iter(fake_wecom.org.users.values()))
    answer = api.get("user/get", userid=user.userid)
    assert answer["errcode"] == 0
    assert answer["name"] == user.name
    assert answer["department"] == list(user.departments)
    assert answer["mobile"] == user.mobile
    assert api.get("user/get", userid="nobody-here")["errcode"] == 60111
    assert api.get("user/get")["errcode"] == 41009


def test_restricted_mode(fake_wecom):
    fake_wecom.restricted = True
    contacts, app = Api(fake_wecom), Api(fake_wecom, "app")
    user = next(iter(fake_wecom.org.users.values()))
    # The contact-sync secret lists ids only; every read of details is refused.
    assert contacts.get("department/simplelist")["errcode"] == 0
    assert contacts.post("user/list_id", {})["errcode"] == 0
    for path, params in (("user/get", {"userid": user.userid}), ("user/list", {"department_id": 1}),
                         ("user/simplelist", {"department_id": 1}), ("department/list", {}),
                         ("department/get", {"id": 1})):
        answer = contacts.get(path, **params)
        assert answer["errcode"] == 48009, path
        assert answer["errmsg"].startswith("api forbidden for contact assistant")
    # The app secret reads names and departments, without the sensitive fields (a new app).
    detail = app.get("user/get", userid=user.userid)
    assert detail["errcode"] == 0 and detail["name"] == user.name
    assert not set(SENSITIVE_USER_FIELDS) & set(detail)
    listed = app.get("user/list", department_id=1, fetch_child=1)["userlist"]
    assert len(listed) == len(fake_wecom.org.users) and "mobile" not in listed[0]
    assert app.get("department/list")["department"][0]["name"]
    assert app.get("department/get", id=1)["department"]["name"]
    # An app created before 2022-06-20 still gets them.
    fake_wecom.new_app = False
    assert app.get("user/get", userid=user.userid)["mobile"] == user.mobile
    fake_wecom.new_app = None
    # OAuth detail is the sanctioned way to the sensitive fields.
    code = fake_wecom.issue_oauth_code(userid=user.userid, scope="snsapi_privateinfo")
    info = app.get("auth/getuserinfo", code=code)
    sensitive = app.post("auth/getuserdetail", {"user_ticket": info["user_ticket"]})
    assert sensitive["mobile"] == user.mobile and sensitive["email"] == user.email


def test_the_app_reads_within_its_visible_range(fake_wecom):
    org = fake_wecom.org
    top = org.departments[org.departments[1].children[0]]
    fake_wecom.set_visible_range(departments=[top])
    app, contacts = Api(fake_wecom, "app"), Api(fake_wecom)
    inside = {d.id for d in org.subtree(top.id)}
    seen = {d["id"] for d in app.get("department/list")["department"]}
    assert seen == inside
    assert {d["id"] for d in app.get("department/simplelist")["department_id"]} == inside
    members = {u.userid for u in org.users.values() if set(u.departments) & inside}
    listed = {u["userid"] for u in app.get("user/list", department_id=top.id, fetch_child=1)["userlist"]}
    assert listed == {u.userid for u in org.members_of(top.id, recursive=True)} and listed <= members
    outside_user = next(u for u in org.users.values() if u.userid not in members)
    outside_dept = next(d for d in org.departments.values() if d.id not in inside)
    assert app.get("user/get", userid=outside_user.userid)["errcode"] == 60011
    assert app.get("department/get", id=outside_dept.id)["errcode"] == 60011
    assert app.get("user/list", department_id=outside_dept.id)["errcode"] == 60011
    assert app.get("department/list", id=outside_dept.id)["errcode"] == 60011
    assert org.app_sees_user(next(iter(members))) and not org.app_sees_user(outside_user.userid)
    assert org.app_sees_department(top.id) and not org.app_sees_department(outside_dept)
    # The contact secret is not bound by the app's range (old world).
    assert contacts.get("user/get", userid=outside_user.userid)["errcode"] == 0
    # A single member can be put in the range; the control API sets and clears it.
    fake_wecom.set_visible_range(users=[outside_user])
    assert app.get("user/get", userid=outside_user.userid)["errcode"] == 0
    requests.post(f"{fake_wecom.api_base}/fake/settings", json={"visible_range": None}, timeout=5)
    assert org.visible_range is None
    requests.post(f"{fake_wecom.api_base}/fake/settings",
                  json={"visible_range": {"departments": [top.id]}, "new_app": True}, timeout=5)
    assert org.visible_range == {"departments": [top.id], "users": []} and fake_wecom.new_app
    assert "mobile" not in app.get("user/get", userid=next(iter(members)))


def test_customer_reads_with_the_app_secret_follow_its_visible_range(fake_wecom):
    org = fake_wecom.org
    follows = [u for u in org.users.values() if u.follows]
    hidden, shown = follows[0], follows[1]
    fake_wecom.customer_app_authorised = True  # listed under 客户联系 → 可调用接口的应用
    fake_wecom.set_visible_range(users=[shown])
    app, customers = Api(fake_wecom, "app"), Api(fake_wecom, "customers")
    batch = app.post("externalcontact/batch/get_by_user",
                     {"userid_list": [hidden.userid, shown.userid], "limit": 100})
    assert {row["follow_info"]["userid"] for row in batch["external_contact_list"]} == {shown.userid}
    assert app.get("externalcontact/list", userid=hidden.userid)["errcode"] == 60011
    contact = hidden.follows[0].contact
    answer = app.get("externalcontact/get", external_userid=contact.external_userid)
    assert hidden.userid not in {f["userid"] for f in answer.get("follow_user", [])}
    # The customer-contact secret is not bound by the app's range.
    full = customers.get("externalcontact/get", external_userid=contact.external_userid)
    assert hidden.userid in {f["userid"] for f in full["follow_user"]}


# ---------------------------------------------------------------------------------------- messages
def test_message_send_reports_invalid_recipients_and_records_deliveries(fake_wecom):
    api = Api(fake_wecom, "app")
    good = active_userids(fake_wecom, 3)
    inactive = inactive_userid(fake_wecom)
    answer = api.send(touser="|".join([*good, "ghost", inactive, good[0]]), toparty="777", totag="5")
    assert answer["errcode"] == 0
    assert answer["invaliduser"] == f"ghost|{inactive}"
    assert answer["invalidparty"] == "777"
    assert answer["invalidtag"] == "5"
    assert answer["msgid"]
    assert sorted(d["userid"] for d in fake_wecom.deliveries) == sorted(good)
    delivery = fake_wecom.deliveries_for(good[1])[0]
    assert delivery["msgid"] == answer["msgid"]
    assert delivery["content"] == {"content": "你好"}
    assert delivery["msgtype"] == "text" and delivery["agentid"] == fake_wecom.agent_id
    assert fake_wecom.deliveries_for("ghost") == []
    assert len(fake_wecom.sent_messages) == 1


def test_message_to_a_department_reaches_its_whole_subtree(make_fake_wecom):
    fake = make_fake_wecom(users=300, departments=30, seed=6)
    org = fake.org
    branch = next(d for d in org.departments.values() if d.parentid == 1 and d.children)
    expected = {u.userid for u in org.members_of(branch.id, recursive=True) if u.status == 1}
    assert any(branch.id not in org.users[u].departments for u in expected)
    answer = Api(fake, "app").send(toparty=str(branch.id))
    assert answer["errcode"] == 0
    assert {d["userid"] for d in fake.deliveries} == expected


def test_message_to_nobody_valid_is_81013(fake_wecom):
    api = Api(fake_wecom, "app")
    answer = api.send(touser="ghost1|ghost2", toparty="999")
    assert answer["errcode"] == 81013
    assert answer["invaliduser"] == "ghost1|ghost2"
    assert fake_wecom.deliveries == []
    assert api.send(touser="")["errcode"] == 81013


def test_message_to_all_reaches_active_members_only(fake_wecom):
    answer = Api(fake_wecom, "app").send(touser="@all")
    assert answer["errcode"] == 0
    assert sorted(d["userid"] for d in fake_wecom.deliveries) == sorted(active_userids(fake_wecom))


def test_message_send_validation(fake_wecom):
    api = Api(fake_wecom, "app")
    someone = active_userids(fake_wecom, 1)[0]
    assert api.send(touser="|".join(f"u{i}" for i in range(1001)))["errcode"] == 40032
    assert api.send(touser=someone, toparty="|".join(str(i) for i in range(101)))["errcode"] == 82002
    assert api.send(touser=someone, totag="|".join(str(i) for i in range(101)))["errcode"] == 82003
    assert api.send(touser=someone, agentid=1)["errcode"] == 40056
    assert api.post("message/send", {"touser": someone, "msgtype": "text", "text": {"content": "x"}}
                    )["errcode"] == 41011
    assert api.send(touser=someone, msgtype="telegram")["errcode"] == 40008
    assert api.send(touser=someone, text={"content": ""})["errcode"] == 44004
    assert api.send(touser=someone, msgtype="image", image={"media_id": "nope"})["errcode"] == 40007
    assert api.send(touser=someone, msgtype="textcard", textcard={"title": "t", "url": "https://x"}
                    )["errcode"] == 41033
    articles = [{"title": str(i), "url": "https://example.com"} for i in range(9)]
    assert api.send(touser=someone, msgtype="news", news={"articles": articles})["errcode"] == 45008
    assert api.send(touser=someone, msgtype="markdown", markdown={"content": "**ok**"})["errcode"] == 0
    assert fake_wecom.deliveries[-1]["msgtype"] == "markdown"
    assert len(fake_wecom.deliveries) == 1


def test_long_text_is_cut_at_2048_bytes_without_breaking_characters(fake_wecom):
    someone = active_userids(fake_wecom, 1)[0]
    assert Api(fake_wecom, "app").send(touser=someone, text={"content": "企" * 1000})["errcode"] == 0
    content = fake_wecom.deliveries_for(someone)[0]["content"]["content"]
    assert content == "企" * 682  # 3 bytes each: 2046 bytes, the last whole character


def test_duplicate_check(fake_wecom):
    api = Api(fake_wecom, "app")
    who = "|".join(active_userids(fake_wecom, 2))
    first = api.send(touser=who, enable_duplicate_check=1, duplicate_check_interval=600)
    again = api.send(touser=who, enable_duplicate_check=1, duplicate_check_interval=600)
    assert again["msgid"] == first["msgid"]
    assert len(fake_wecom.deliveries) == 2
    other = api.send(touser=who, enable_duplicate_check=1, text={"content": "different"})
    assert other["msgid"] != first["msgid"]
    fake_wecom.advance_time(601)
    later = api.send(touser=who, enable_duplicate_check=1, duplicate_check_interval=600)
    assert later["msgid"] != first["msgid"]
    assert len(fake_wecom.deliveries) == 6
    plain1, plain2 = api.send(touser=who), api.send(touser=who)
    assert plain1["msgid"] != plain2["msgid"]
    assert len(fake_wecom.deliveries) == 10


def test_member_message_quota_drops_silently_when_limits_are_on(fake_wecom):
    fake_wecom.rate_limits = True
    api = Api(fake_wecom, "app")
    someone = active_userids(fake_wecom, 1)[0]
    answers = [api.send(touser=someone, text={"content": str(i)}) for i in range(32)]
    assert all(a["errcode"] == 0 for a in answers)
    assert len(fake_wecom.deliveries_for(someone)) == 30
    fake_wecom.advance_time(61)
    api.token = api.gettoken()["access_token"]
    assert api.send(touser=someone)["errcode"] == 0
    assert len(fake_wecom.deliveries_for(someone)) == 31


def test_template_card_interaction_gets_a_response_code(fake_wecom):
    someone = active_userids(fake_wecom, 1)[0]
    card = {"card_type": "button_interaction", "main_title": {"title": "审批"}, "task_id": "t1",
            "button_list": [{"text": "同意", "key": "yes"}]}
    answer = Api(fake_wecom, "app").send(touser=someone, msgtype="template_card", template_card=card)
    assert answer["errcode"] == 0 and answer["response_code"]


# ---------------------------------------------------------------------------------------- login
def test_oauth_code_is_single_use(fake_wecom):
    api = Api(fake_wecom, "app")
    user = active_userids(fake_wecom, 1)[0]
    code = fake_wecom.issue_oauth_code(userid=user, scope="snsapi_privateinfo")
    info = api.get("auth/getuserinfo", code=code)
    assert info["errcode"] == 0 and info["userid"] == user and info["user_ticket"]
    assert api.get("auth/getuserinfo", code=code)["errcode"] == 40029
    assert api.get("auth/getuserinfo", code="made-up")["errcode"] == 40029
    assert api.get("auth/getuserinfo")["errcode"] == 41008
    detail = api.post("auth/getuserdetail", {"user_ticket": info["user_ticket"]})
    assert detail["userid"] == user and detail["mobile"] == fake_wecom.org.users[user].mobile
    assert set(detail) >= {"gender", "avatar", "qr_code", "mobile", "email", "biz_mail", "address"}
    assert api.post("auth/getuserdetail", {"user_ticket": "nope"})["errcode"] == 84015
    assert user in fake_wecom.org.users
    assert Api(fake_wecom).get("auth/getuserinfo", code="x")["errcode"] == 48002


def test_user_ticket_only_for_the_privateinfo_scope(fake_wecom):
    """WeCom adds user_ticket only when the authorize URL asked for snsapi_privateinfo (doc 91023)."""
    api = Api(fake_wecom, "app")
    user = active_userids(fake_wecom, 1)[0]
    base = api.get("auth/getuserinfo", code=fake_wecom.issue_oauth_code(userid=user))
    assert base["errcode"] == 0 and base["userid"] == user and "user_ticket" not in base
    private = api.get("auth/getuserinfo", code=fake_wecom.issue_oauth_code(userid=user, scope="snsapi_privateinfo"))
    assert private["userid"] == user and private["user_ticket"]
    with pytest.raises(ValueError):
        fake_wecom.issue_oauth_code(userid=user, scope="snsapi_userinfo")


def test_oauth_code_and_ticket_expire(fake_wecom):
    api = Api(fake_wecom, "app")
    user = active_userids(fake_wecom, 1)[0]
    stale = fake_wecom.issue_oauth_code(userid=user)
    fresh = fake_wecom.issue_oauth_code(userid=user, scope="snsapi_privateinfo")
    info = api.get("auth/getuserinfo", code=fresh)
    fake_wecom.advance_time(301)
    assert api.get("auth/getuserinfo", code=stale)["errcode"] == 40029
    fake_wecom.advance_time(1500)
    api.token = api.gettoken()["access_token"]
    assert api.post("auth/getuserdetail", {"user_ticket": info["user_ticket"]})["errcode"] == 84014


def test_oauth_for_a_non_member_gives_an_openid(fake_wecom):
    info = Api(fake_wecom, "app").get("auth/getuserinfo", code=fake_wecom.issue_oauth_code(openid="oAbC123"))
    assert info["errcode"] == 0 and info["openid"] == "oAbC123" and "userid" not in info
    with pytest.raises(ValueError):
        fake_wecom.issue_oauth_code()
    with pytest.raises(FakeWeComError):
        fake_wecom.issue_oauth_code(userid="ghost")


def test_authsucc_records_the_member(fake_wecom):
    api = Api(fake_wecom, "contacts")
    user = active_userids(fake_wecom, 1)[0]
    # Only a member WeCom sent to the verification page, and only through the contact-sync secret (seed 003).
    assert api.get("user/authsucc", userid=user)["errcode"] == 60011
    fake_wecom.issue_tfa_code(user)
    assert Api(fake_wecom, "app").get("user/authsucc", userid=user)["errcode"] == 48002
    assert api.get("user/authsucc", userid=user)["errcode"] == 0
    assert user in fake_wecom.authsucc_users
    assert api.get("user/authsucc", userid="ghost")["errcode"] == 60111


# ---------------------------------------------------------------------------------------- customers
def test_external_contact_batch_pages_through_every_relation(make_fake_wecom):
    fake = make_fake_wecom(users=300, departments=10, seed=8)
    api = Api(fake, "customers")
    userids = [u.userid for u in fake.org.users.values()][:100]
    expected = [(f.user.userid, f.contact.external_userid)
                for uid in userids for f in (fake.org.users[uid].follows or [])]
    assert len(expected) > 20
    seen, cursor, pages = [], "", 0
    while True:
        answer = api.post("externalcontact/batch/get_by_user",
                          {"userid_list": userids, "cursor": cursor, "limit": 7})
        assert answer["errcode"] == 0
        assert len(answer["external_contact_list"]) <= 7
        seen += [(r["follow_info"]["userid"], r["external_contact"]["external_userid"])
                 for r in answer["external_contact_list"]]
        pages += 1
        cursor = answer["next_cursor"]
        if not cursor:
            break
    assert seen == expected
    assert pages == -(-len(expected) // 7)
    # Above the maximum, WeCom falls back to the default page size of 50.
    big = api.post("externalcontact/batch/get_by_user", {"userid_list": userids, "limit": 1000})
    assert len(big["external_contact_list"]) == min(50, len(expected))
    assert api.post("externalcontact/batch/get_by_user",
                    {"userid_list": [f"u{i}" for i in range(101)]})["errcode"] == 40058


def test_external_contact_list_and_get(fake_wecom):
    api = Api(fake_wecom, "customers")
    with_contacts = next(u for u in fake_wecom.org.users.values() if u.follows)
    without = next(u for u in fake_wecom.org.users.values() if not u.follows)
    ids = api.get("externalcontact/list", userid=with_contacts.userid)["external_userid"]
    assert ids == [f.contact.external_userid for f in with_contacts.follows]
    assert all(i.startswith("wm") for i in ids)
    assert api.get("externalcontact/list", userid=without.userid)["errcode"] == 84061
    detail = api.get("externalcontact/get", external_userid=ids[0])
    assert detail["external_contact"]["external_userid"] == ids[0]
    assert with_contacts.userid in {f["userid"] for f in detail["follow_user"]}
    assert detail["external_contact"]["type"] in (1, 2)
    assert api.get("externalcontact/get", external_userid="wmNOPE")["errcode"] == 40096


# ---------------------------------------------------------------------------------------- menu, media
def test_menu_create_get_delete(fake_wecom):
    api = Api(fake_wecom, "app")
    agentid = fake_wecom.agent_id
    assert api.get("menu/get", agentid=agentid)["errcode"] == 46003
    menu = {"button": [
        {"type": "click", "name": "今日歌曲", "key": "V1001_TODAY_MUSIC"},
        {"name": "菜单", "sub_button": [
            {"type": "view", "name": "搜索", "url": "https://www.example.com/"},
            {"type": "scancode_push", "name": "扫码", "key": "scan"},
        ]},
    ]}
    assert api.post("menu/create", menu, agentid=agentid)["errcode"] == 0
    got = api.get("menu/get", agentid=agentid)
    assert got["button"] == menu["button"]
    assert fake_wecom.menus[agentid] == menu
    assert api.get("menu/delete", agentid=agentid)["errcode"] == 0
    assert api.get("menu/get", agentid=agentid)["errcode"] == 46003
    assert api.post("menu/create", menu, agentid=1)["errcode"] == 40056


@pytest.mark.parametrize("buttons, errcode", [
    ([{"type": "click", "name": "a", "key": "k"}] * 4, 40016),
    ([], 40016),
    ([{"name": "m", "sub_button": [{"type": "click", "name": "s", "key": "k"}] * 6}], 40023),
    ([{"type": "click", "name": "一二三四五六", "key": "k"}], 40018),
    ([{"type": "teleport", "name": "a", "key": "k"}], 40017),
    ([{"type": "click", "name": "a"}], 40019),
    ([{"type": "view", "name": "a"}], 40020),
    ([{"name": "m", "sub_button": [{"type": "bad", "name": "s", "key": "k"}]}], 40024),
    ([{"name": "m", "sub_button": [{"name": "s", "sub_button": [{"type": "click", "name": "x", "key": "k"}]}]}
      ], 40022),
])
def test_menu_validation(fake_wecom, buttons, errcode):
    api = Api(fake_wecom, "app")
    assert api.post("menu/create", {"button": buttons}, agentid=fake_wecom.agent_id)["errcode"] == errcode
    assert fake_wecom.menus == {}


def test_media_upload_and_use(fake_wecom):
    api = Api(fake_wecom, "app")
    url = f"{fake_wecom.api_base}/cgi-bin/media/upload"

    def upload(media_type, filename, data, field="media"):
        params = {"access_token": api.token, "type": media_type}
        return api.session.post(url, params=params, files={field: (filename, data)}, timeout=TIMEOUT).json()

    png = b"\x89PNG\r\n\x1a\n" + os.urandom(64) + b"\r\n--not-a-boundary\r\n"
    answer = upload("image", "logo.png", png)
    assert answer["errcode"] == 0 and answer["type"] == "image"
    assert isinstance(answer["created_at"], str)
    stored = fake_wecom.media[answer["media_id"]]
    assert stored["size"] == len(png) and stored["filename"] == "logo.png"
    someone = active_userids(fake_wecom, 1)[0]
    sent = api.send(touser=someone, msgtype="image", image={"media_id": answer["media_id"]})
    assert sent["errcode"] == 0
    assert upload("sticker", "a.png", png)["errcode"] == 40005
    assert upload("image", "anim.gif", png)["errcode"] == 40004
    assert upload("file", "tiny.txt", b"1234")["errcode"] == 40006
    assert upload("file", "report.pdf", png, field="other")["errcode"] == 44001
    assert upload("file", "report.pdf", png)["errcode"] == 0


# ---------------------------------------------------------------------------------------- limits, faults
def test_rate_limit_blocks_then_recovers(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_rate_limit(per_minute=50, block_seconds=1)
    codes = [api.get("department/simplelist")["errcode"] for _ in range(55)]
    assert codes[:50] == [0] * 50
    assert set(codes[50:]) == {45009}
    # Limits are per API: another call is unaffected.
    assert api.get("user/simplelist", department_id=1)["errcode"] == 0
    fake_wecom.advance_time(1.5)
    assert api.get("department/simplelist")["errcode"] == 0


def test_hour_limit_blocks_for_the_hour_block(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_rate_limit(per_minute=1000, per_hour=20, hour_block_seconds=120)
    codes = [api.get("department/simplelist")["errcode"] for _ in range(21)]
    assert codes[-1] == 45009 and codes[:-1] == [0] * 20
    fake_wecom.advance_time(61)
    assert api.get("department/simplelist")["errcode"] == 45009
    fake_wecom.advance_time(60)
    assert api.get("department/simplelist")["errcode"] == 0


def test_concurrency_limit(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_rate_limit(concurrency=1)
    fake_wecom.set_faults(latency=0.5, paths=["department/simplelist"])
    codes = []
    together = threading.Barrier(3, timeout=10)

    def call():
        session = requests.Session()
        params = {"access_token": api.token}
        together.wait()
        codes.append(session.get(f"{fake_wecom.api_base}/cgi-bin/department/simplelist", params=params,
                                 timeout=TIMEOUT).json()["errcode"])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 0 in codes and 45033 in codes


def test_injected_errcodes_only_on_chosen_paths(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_faults(error_rate=1.0, errcodes=(-1,), paths=["/cgi-bin/department/simplelist"])
    assert api.get("department/simplelist")["errcode"] == -1
    assert api.get("user/simplelist", department_id=1)["errcode"] == 0
    assert fake_wecom.calls["department/simplelist"] == 1
    fake_wecom.clear_faults()
    assert api.get("department/simplelist")["errcode"] == 0


def test_faults_apply_to_gettoken_unless_excluded(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_faults(error_rate=1.0, errcodes=(-1,))
    assert api.gettoken()["errcode"] == -1
    fake_wecom.set_faults(error_rate=1.0, errcodes=(-1,), paths=["user/get"])
    assert api.gettoken()["errcode"] == 0


def test_faults_are_repeatable_by_seed(fake_wecom):
    api = Api(fake_wecom)

    def run():
        fake_wecom.set_faults(error_rate=0.5, errcodes=(-1, 45009), paths=["department/simplelist"], seed=42)
        return [api.get("department/simplelist")["errcode"] for _ in range(30)]

    first = run()
    assert first == run()
    assert {0, -1, 45009} <= set(first)


def test_dropped_connection_raises_connection_error(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_faults(drop_rate=1.0, paths=["department/simplelist"])
    with pytest.raises(requests.ConnectionError):
        api.get("department/simplelist")
    fake_wecom.clear_faults()
    assert api.get("department/simplelist")["errcode"] == 0


def test_slow_answer_times_the_client_out_but_the_work_is_done(fake_wecom):
    api = Api(fake_wecom, "app")
    someone = active_userids(fake_wecom, 1)[0]
    fake_wecom.set_faults(timeout_rate=1.0, timeout_seconds=1.0, paths=["message/send"])
    body = {"touser": someone, "msgtype": "text", "agentid": fake_wecom.agent_id, "text": {"content": "x"}}
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{fake_wecom.api_base}/cgi-bin/message/send", params={"access_token": api.token},
                      json=body, timeout=(2, 0.1))
    for _ in range(50):  # bounded wait for the server thread to finish its sleep
        if fake_wecom.deliveries_for(someone):
            break
        time.sleep(0.1)
    assert len(fake_wecom.deliveries_for(someone)) == 1


def test_latency_delays_but_answers(fake_wecom):
    api = Api(fake_wecom)
    fake_wecom.set_faults(latency=0.3, paths=["department/simplelist"])
    with pytest.raises(requests.ReadTimeout):
        requests.get(f"{fake_wecom.api_base}/cgi-bin/department/simplelist",
                     params={"access_token": api.token}, timeout=(2, 0.05))
    assert api.get("department/simplelist")["errcode"] == 0


def test_stop_cuts_keep_alive_connections(make_fake_wecom):
    fake = make_fake_wecom(users=5, departments=2)
    api = Api(fake)
    assert api.get("department/simplelist")["errcode"] == 0
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        api.get("department/simplelist")


# ---------------------------------------------------------------------------------------- the org
def test_org_is_deterministic_by_seed():
    def snapshot(org):
        return ([(d.id, d.name, d.parentid, d.order) for d in org.departments.values()],
                [(u.userid, u.name, u.departments, u.status, u.mobile) for u in org.users.values()],
                sorted(org.external_contacts))

    assert snapshot(Org.generate(users=300, departments=25, seed=9)) == \
        snapshot(Org.generate(users=300, departments=25, seed=9))
    assert snapshot(Org.generate(users=300, departments=25, seed=9)) != \
        snapshot(Org.generate(users=300, departments=25, seed=10))


@pytest.mark.parametrize("users, departments, seed", [(50, 5, 1), (60, 8, 2), (2000, 300, 3)])
def test_org_is_realistic(users, departments, seed):
    org = Org.generate(users=users, departments=departments, seed=seed)
    assert len(org.users) == users and len(org.departments) == departments
    names = collections.Counter(u.name for u in org.users.values())
    assert sum(1 for c in names.values() if c > 1) >= 2  # same-name colleagues exist
    assert all(u.userid.isascii() and u.userid.isalnum() for u in org.users.values())
    assert len({u.mobile for u in org.users.values()}) == users
    assert all(1 <= d.depth <= 15 for d in org.departments.values())
    assert all(set(u.departments) <= set(org.departments) for u in org.users.values())
    for dept in org.departments.values():
        children = [org.departments[c].name for c in dept.children]
        assert len(children) == len(set(children))
        assert all(leader in dept.members for leader in dept.leaders)
    statuses = collections.Counter(u.status for u in org.users.values())
    assert statuses[1] > users * 0.8 and 5 not in statuses
    assert sum(1 for u in org.users.values() if len(u.departments) > 1) > 0
    assert sum(1 for u in org.users.values() if u.follows) > 0


def test_large_org_depth_profile():
    org = Org.generate(users=2000, departments=3000, seed=1)
    depths = collections.Counter(d.depth for d in org.departments.values())
    assert max(depths) <= 15
    assert sum(depths[d] for d in range(3, 7)) > 0.7 * 3000


# ---------------------------------------------------------------------------------------- callbacks
TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


class Receiver:
    """A tiny callback endpoint of our own: verifies, decrypts and records what WeCom would push."""

    def __init__(self, receive_id: str, statuses=(), delays=()):
        self.crypto = WeComCrypto(TOKEN, AES_KEY, receive_id)
        self.statuses = list(statuses)
        self.delays = list(delays)
        self.messages: list[str] = []
        self.envelopes: list[dict] = []
        self.hits = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _query(self):
                return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

            def _answer(self, status, body=b""):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                q = self._query()
                try:
                    echo = receiver.crypto.verify_url(q["msg_signature"], q["timestamp"], q["nonce"],
                                                      q["echostr"])
                except Exception:
                    return self._answer(400)
                self._answer(200, echo.encode())

            def do_POST(self):
                receiver.hits += 1
                delay = receiver.delays.pop(0) if receiver.delays else 0
                if delay:
                    time.sleep(delay)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                q = self._query()
                root = ElementTree.fromstring(body)
                envelope = {child.tag: child.text for child in root}
                try:
                    xml = receiver.crypto.decrypt(q["msg_signature"], q["timestamp"], q["nonce"],
                                                  envelope["Encrypt"])
                except Exception:
                    return self._answer(400)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.messages.append(xml)
                    receiver.envelopes.append(envelope)
                self._answer(status, b"success" if status == 200 else b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wecom/callback?tenant=t1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def parsed(self, i=-1) -> dict:
        return {child.tag: child.text for child in ElementTree.fromstring(self.messages[i])}


@pytest.fixture
def receiver():
    made = []

    def make(receive_id, **kwargs):
        made.append(Receiver(receive_id, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_sender_verify_url_round_trips_echostr(receiver):
    target = receiver("ww1234567890abcdef")
    sender = CallbackSender(target.url, TOKEN, AES_KEY, "ww1234567890abcdef")
    # Enough tries that some ciphertexts contain "+", "/" and "=", which must survive URL-encoding.
    ciphertexts = []
    for i in range(20):
        response = sender.verify_url(echostr=f"echo-{i}-{os.urandom(8).hex()}")
        assert response.status_code == 200
        assert response.content == response.expected_echostr.encode()
        ciphertexts.append(parse_qs(urlsplit(response.request.url).query)["echostr"][0])
    assert any("+" in c or "/" in c for c in ciphertexts)
    sender.check_url()
    wrong = CallbackSender(target.url, "othertoken", AES_KEY, "ww1234567890abcdef")
    with pytest.raises(CallbackVerificationError):
        wrong.check_url()


def test_sender_posts_encrypted_signed_xml(receiver):
    target = receiver("wwcorp00000000000a")
    sender = CallbackSender(target.url, TOKEN, AES_KEY, "wwcorp00000000000a")
    xml = build_message_xml("wwcorp00000000000a", "zhangsan", 1000002, content="你好 <b>&]]> 🙂",
                            msg_id=1234567890123456, create_time=1700000000)
    result = sender.post(xml)
    assert result.ok and result.attempts == 1 and result.body == "success"
    fields = target.parsed()
    assert fields["Content"] == "你好 <b>&]]> 🙂"
    assert fields["FromUserName"] == "zhangsan" and fields["MsgType"] == "text"
    assert fields["MsgId"] == "1234567890123456" and fields["AgentID"] == "1000002"
    assert target.envelopes[0]["ToUserName"] == "wwcorp00000000000a"
    assert target.envelopes[0]["AgentID"] is None


def test_sender_retries_5xx_like_wecom(receiver):
    target = receiver("wwcorp00000000000b", statuses=[500, 200])
    sender = CallbackSender(target.url, TOKEN, AES_KEY, "wwcorp00000000000b")
    result = sender.post(build_event_xml("wwcorp00000000000b", "lisi", 1000002, "click", event_key="K1"))
    assert result.ok and result.attempts == 2
    assert target.hits == 2
    assert target.parsed()["EventKey"] == "K1"

    failing = receiver("wwcorp00000000000b", statuses=[503, 502, 500, 200])
    result = CallbackSender(failing.url, TOKEN, AES_KEY, "wwcorp00000000000b").post("<xml></xml>")
    assert not result.ok and result.attempts == 3 and result.status == 500
    assert failing.hits == 3


def test_sender_does_not_retry_a_client_error(receiver):
    target = receiver("wwcorp00000000000c", statuses=[400])
    result = CallbackSender(target.url, TOKEN, AES_KEY, "wwcorp00000000000c").post("<xml/>")
    assert result.status == 400 and result.attempts == 1 and not result.ok


def test_sender_retries_after_a_timeout(receiver):
    target = receiver("wwcorp00000000000d", delays=[1.0])
    sender = CallbackSender(target.url, TOKEN, AES_KEY, "wwcorp00000000000d", timeout=0.3)
    result = sender.post(build_external_contact_xml("wwcorp00000000000d", "add_external_contact", "zhangsan",
                                                    "wmABC", state="expo", welcome_code="WC"))
    assert result.ok and result.attempts == 2
    fields = target.parsed()
    assert fields["ExternalUserID"] == "wmABC" and fields["WelcomeCode"] == "WC"


def test_sender_envelope_can_be_tampered_with(receiver):
    target = receiver("wwcorp00000000000e")
    sender = CallbackSender(target.url, TOKEN, AES_KEY, "wwcorp00000000000e", tries=1)
    params, body = sender.envelope("<xml><A>1</A></xml>", timestamp=1700000000, nonce="123")
    assert params["timestamp"] == "1700000000" and params["nonce"] == "123"
    params["msg_signature"] = "0" * 40
    assert sender.post_envelope(params, body).status == 400
    assert target.messages == []


def test_sender_opens_a_passive_reply():
    crypto = WeComCrypto(TOKEN, AES_KEY, "wwcorp00000000000f")
    sender = CallbackSender("http://127.0.0.1:9/unused", TOKEN, AES_KEY, "wwcorp00000000000f")
    reply = crypto.build_reply("<xml><Content>pong</Content></xml>")
    assert sender.open_reply(reply) == "<xml><Content>pong</Content></xml>"
    assert sender.open_reply("success") is None
    with pytest.raises(ValueError):
        sender.open_reply(reply.replace("<MsgSignature><![CDATA[", "<MsgSignature><![CDATA[0"))


def test_contact_user_xml_shape():
    xml = build_contact_user_xml("wwx", "update_user", {
        "userid": "zhangsan", "new_userid": "zhangsan2", "department": [1, 2], "is_leader_in_dept": [1, 0],
        "status": 1, "gender": "2",
        "extattr": {"attrs": [{"name": "工号", "type": 0, "text": {"value": "7"}}]},
    }, create_time=1700000000)
    root = ElementTree.fromstring(xml)
    assert root.findtext("Event") == "change_contact" and root.findtext("ChangeType") == "update_user"
    assert root.findtext("UserID") == "zhangsan" and root.findtext("NewUserID") == "zhangsan2"
    assert root.findtext("Department") == "1,2" and root.findtext("IsLeaderInDept") == "1,0"
    assert root.findtext("ExtAttr/item/Name") == "工号" and root.findtext("ExtAttr/item/Text/Value") == "7"
    assert root.find("Mobile") is None
    assert "<Status>1</Status>" in xml and "<Gender>2</Gender>" in xml


# ---------------------------------------------------------------------------------------- mutations
def test_mutations_emit_change_contact_callbacks(fake_wecom, receiver):
    target = receiver(fake_wecom.corp_id)
    fake_wecom.register_callback(target.url, TOKEN, AES_KEY, kind="contacts", verify=True)
    api = Api(fake_wecom)

    [result] = fake_wecom.add_user("newbie", "新人", department=[1, 2], mobile="13900000000",
                                   position="实习生")
    assert result.ok and result.attempts == 1
    created = target.parsed()
    assert created["ChangeType"] == "create_user" and created["UserID"] == "newbie"
    assert created["Name"] == "新人" and created["Department"] == "1,2" and created["Mobile"] == "13900000000"
    assert created["FromUserName"] == "sys" and created["ToUserName"] == fake_wecom.corp_id
    assert api.get("user/get", userid="newbie")["position"] == "实习生"

    fake_wecom.update_user("newbie", new_userid="veteran", name="老兵")
    updated = target.parsed()
    assert updated["ChangeType"] == "update_user"
    assert (updated["UserID"], updated["NewUserID"], updated["Name"]) == ("newbie", "veteran", "老兵")
    assert "Mobile" not in updated and "Department" not in updated  # only what changed
    assert api.get("user/get", userid="newbie")["errcode"] == 60111
    assert api.get("user/get", userid="veteran")["name"] == "老兵"
    assert fake_wecom.update_user("veteran", name="老兵") == []

    fake_wecom.update_user("veteran", department=[2])
    assert target.parsed()["Department"] == "2"

    fake_wecom.add_department(id=500, name="新部门", parentid=2, order=5)
    party = target.parsed()
    assert (party["ChangeType"], party["Id"], party["Name"]) == ("create_party", "500", "新部门")
    assert party["ParentId"] == "2" and party["Order"] == "5"
    assert 500 in [d["id"] for d in api.get("department/list", id=2)["department"]]
    fake_wecom.update_department(500, name="更名部门")
    renamed = target.parsed()
    assert (renamed["ChangeType"], renamed["Name"]) == ("update_party", "更名部门")
    assert "ParentId" not in renamed
    fake_wecom.update_user("veteran", department=[500])
    with pytest.raises(FakeWeComError) as error:
        fake_wecom.delete_department(500)
    assert error.value.errcode == 60005

    fake_wecom.delete_user("veteran")
    deleted = target.parsed()
    assert deleted["ChangeType"] == "delete_user" and deleted["UserID"] == "veteran"
    fake_wecom.delete_department(500)
    assert target.parsed()["ChangeType"] == "delete_party"
    assert api.get("department/get", id=500)["errcode"] == 60003
    assert len(target.messages) == 8
    assert [kind for kind, _, _ in fake_wecom.callback_log] == ["contacts"] * 8


def test_mutation_errors_follow_wecom(fake_wecom):
    existing = next(iter(fake_wecom.org.users))
    branch = next(d for d in fake_wecom.org.departments.values() if d.id != 1 and d.children)
    for call, errcode in [
        (lambda: fake_wecom.add_user(existing, "重复"), 60102),
        (lambda: fake_wecom.add_user("x1", "某人", department=[999]), 60003),
        (lambda: fake_wecom.update_user("ghost", name="x"), 60111),
        (lambda: fake_wecom.add_department(name="研发中心X", parentid=999), 60004),
        (lambda: fake_wecom.delete_department(1), 60007),
        (lambda: fake_wecom.update_department(1, parentid=2), 40058),
        (lambda: fake_wecom.update_department(branch.id, parentid=branch.children[0]), 60010),
    ]:
        with pytest.raises(FakeWeComError) as error:
            call()
        assert error.value.errcode == errcode
    sibling = fake_wecom.org.departments[fake_wecom.org.departments[1].children[0]].name
    with pytest.raises(FakeWeComError) as error:
        fake_wecom.add_department(name=sibling, parentid=1)
    assert error.value.errcode == 60008


def test_quit_status_deletes_and_restricted_callbacks_withhold_fields(fake_wecom, receiver):
    target = receiver(fake_wecom.corp_id)
    fake_wecom.register_callback(target.url, TOKEN, AES_KEY, kind="contacts")
    fake_wecom.restricted = True
    fake_wecom.add_user("quiet", "安静", mobile="13700000000")
    created = target.parsed()
    assert "Mobile" not in created and "Email" not in created and created["Name"] == "安静"
    fake_wecom.update_user("quiet", status=5)
    assert target.parsed()["ChangeType"] == "delete_user"
    assert "quiet" not in fake_wecom.org.users


def test_unreachable_receiver_is_tried_three_times(fake_wecom):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed_port = probe.getsockname()[1]
    probe.close()  # nothing listens there now: every try is refused
    fake_wecom.callback_timeout = 0.5
    fake_wecom.register_callback(f"http://127.0.0.1:{closed_port}/closed", TOKEN, AES_KEY, kind="contacts")
    [result] = fake_wecom.add_user("lonely", "孤单")
    assert not result.ok and result.attempts == 3 and result.status is None and result.error


def test_app_messages_and_customer_events_go_to_their_own_urls(fake_wecom, receiver):
    app_target, customer_target = receiver(fake_wecom.corp_id), receiver(fake_wecom.corp_id)
    fake_wecom.register_callback(app_target.url, TOKEN, AES_KEY, kind="app")
    fake_wecom.register_callback(customer_target.url, TOKEN, AES_KEY, kind="customers")
    someone = active_userids(fake_wecom, 1)[0]
    [result] = fake_wecom.send_app_message(someone, "在吗")
    assert result.ok
    message = app_target.parsed()
    assert message["Content"] == "在吗" and message["FromUserName"] == someone
    assert app_target.envelopes[0]["AgentID"] == str(fake_wecom.agent_id)
    external_userid, [result] = fake_wecom.add_external_contact(someone, "客户甲", state="expo")
    assert result.ok
    event = customer_target.parsed()
    assert event["ChangeType"] == "add_external_contact" and event["ExternalUserID"] == external_userid
    assert event["State"] == "expo" and event["WelcomeCode"]
    ids = Api(fake_wecom, "customers").get("externalcontact/list", userid=someone)["external_userid"]
    assert external_userid in ids


# ---------------------------------------------------------------------------------------- control HTTP API
def test_control_api_over_http(fake_wecom, receiver):
    base = f"{fake_wecom.api_base}/fake"
    target = receiver(fake_wecom.corp_id)
    answer = requests.post(f"{base}/callbacks", json={"url": target.url, "token": TOKEN,
                                                      "encoding_aes_key": AES_KEY, "kind": "contacts"},
                           timeout=TIMEOUT).json()
    assert answer["errcode"] == 0
    added = requests.post(f"{base}/users", json={"userid": "remote", "name": "远程", "department": [1]},
                          timeout=TIMEOUT).json()
    assert added["deliveries"][0]["ok"] is True
    assert target.parsed()["UserID"] == "remote"
    assert requests.post(f"{base}/users", json={"userid": "remote", "name": "again"},
                         timeout=TIMEOUT).json()["errcode"] == 60102
    renamed = requests.post(f"{base}/users/remote", json={"name": "远程二"}, timeout=TIMEOUT).json()
    assert renamed["errcode"] == 0
    assert requests.delete(f"{base}/users/remote", timeout=TIMEOUT).json()["errcode"] == 0
    assert "remote" not in fake_wecom.org.users
    dept = requests.post(f"{base}/departments", json={"name": "远程部", "parentid": 1},
                         timeout=TIMEOUT).json()
    assert dept["errcode"] == 0 and target.parsed()["ChangeType"] == "create_party"

    code = requests.post(f"{base}/oauth_code", json={"userid": active_userids(fake_wecom, 1)[0]},
                         timeout=TIMEOUT).json()["code"]
    assert Api(fake_wecom, "app").get("auth/getuserinfo", code=code)["errcode"] == 0
    Api(fake_wecom, "app").send(touser=active_userids(fake_wecom, 1)[0])
    stats = requests.get(f"{base}/stats", timeout=TIMEOUT).json()
    assert stats["calls"]["message/send"] == 1 and stats["gettoken_calls"]["app"] == 2
    deliveries = requests.get(f"{base}/deliveries", params={"userid": active_userids(fake_wecom, 1)[0]},
                              timeout=TIMEOUT).json()["deliveries"]
    assert len(deliveries) == 1
    assert requests.post(f"{base}/faults", json={"error_rate": 1.0, "errcodes": [-1]},
                         timeout=TIMEOUT).json()["errcode"] == 0
    params = {"corpid": fake_wecom.corp_id, "corpsecret": fake_wecom.secret}
    busy = requests.get(f"{fake_wecom.api_base}/cgi-bin/gettoken", params=params, timeout=TIMEOUT).json()
    assert busy["errcode"] == -1
    requests.post(f"{base}/faults", json={}, timeout=TIMEOUT)
    requests.post(f"{base}/reset_stats", timeout=TIMEOUT)
    assert fake_wecom.calls == {}
    avatar = requests.get(fake_wecom.org.user_json(next(iter(fake_wecom.org.users.values())))["avatar"],
                          timeout=TIMEOUT)
    assert avatar.headers["Content-Type"] == "image/png" and avatar.content.startswith(b"\x89PNG")


def test_credentials_and_corp_id_shape(fake_wecom):
    creds = fake_wecom.credentials()
    assert set(creds) == {"api_base", "corp_id", "agent_id", "secret", "contact_secret", "customer_secret"}
    assert creds["corp_id"].startswith("ww") and len(creds["corp_id"]) == 18
    assert len({creds["secret"], creds["contact_secret"], creds["customer_secret"]}) == 3
    assert creds["api_base"].startswith("http://127.0.0.1:")


def test_two_fakes_are_two_corps(make_fake_wecom):
    one, two = make_fake_wecom(users=10, departments=2), make_fake_wecom(users=10, departments=2)
    assert one.corp_id != two.corp_id and one.api_base != two.api_base
    assert Api(one).gettoken(secret=two.contact_secret)["errcode"] == 40001


def test_management_command_prints_credentials_first(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "wecom_fake_server", "--port", "0", "--users", "20",
         "--departments", "3"],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        line = process.stdout.readline()
        creds = json.loads(line)
        assert set(creds) == set(FakeWeCom(users=1, departments=1).credentials())
        answer = requests.get(f"{creds['api_base']}/cgi-bin/gettoken",
                              params={"corpid": creds["corp_id"], "corpsecret": creds["contact_secret"]},
                              timeout=TIMEOUT).json()
        assert answer["errcode"] == 0
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_list_id_cursor_is_stable(fake_wecom):
    api = Api(fake_wecom)
    first = api.post("user/list_id", {"limit": 3})
    again = api.post("user/list_id", {"limit": 3})
    assert first["next_cursor"] and first["next_cursor"] == again["next_cursor"]


# ---------------------------------------------------------------------------------------- robustness
finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-10**12, 10**12) | finite | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
POST_APIS = ["user/list_id", "message/send", "auth/getuserdetail", "externalcontact/batch/get_by_user",
             "menu/create"]
FIELDS = ["cursor", "limit", "touser", "toparty", "totag", "msgtype", "agentid", "text", "markdown", "news",
          "image", "safe", "enable_duplicate_check", "duplicate_check_interval", "user_ticket", "userid_list",
          "button", "template_card"]


@pytest.fixture(scope="module")
def shared_fake():
    with FakeWeCom(users=40, departments=6, seed=11) as fake:
        yield fake


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(api=st.sampled_from(POST_APIS), body=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6))
def test_any_json_body_gets_a_wecom_answer_never_a_crash(shared_fake, api, body):
    kind = {"user/list_id": "contacts", "externalcontact/batch/get_by_user": "customers"}.get(api, "app")
    client = Api(shared_fake, kind)
    answer = client.post(api, body, agentid=shared_fake.agent_id)
    assert isinstance(answer["errcode"], int) and isinstance(answer["errmsg"], str)


# What XML 1.0 can carry (no C0 controls but tab and newline; "\r" is normalised by every parser).
xml_chars = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
xml_text = st.lists(st.sampled_from(["]]>", "<", "&", "\n", "\t", "🙂"]) | st.text(xml_chars, max_size=5),
                    max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(content=xml_text, from_user=xml_text.filter(bool))
def test_message_xml_round_trips_any_text(content, from_user):
    root = ElementTree.fromstring(build_message_xml("wwcorp", from_user, 1000002, content=content, msg_id=1))
    assert (root.findtext("Content"), root.findtext("FromUserName")) == (content, from_user)

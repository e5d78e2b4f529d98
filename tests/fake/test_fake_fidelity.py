"""The fake WeCom's #23 behaviours, each against the doc page it follows (docs/fake-wecom.md lists them):
customer contact in old and new corps, two-step verification through the right exchange, messages to members
outside the app's visible range, userids matched ignoring case, the daily message quota, media that expire,
and the calls WeCom leaves out of its counts."""

import io

import pytest
import requests

from tests.fake.test_fake_wecom import TIMEOUT, Api, active_userids
from wecom_integration.testing import FakeWeComError


def follower(fake):
    return next(u for u in fake.org.users.values() if u.follows and u.status == 1)


# Customer contact since 2023-12-01 (docs 92994, 96316) ------------------------------------------------
def test_old_corp_reads_customers_with_the_customer_secret(make_fake_wecom):
    fake = make_fake_wecom(users=40, departments=4, customer_contact="secret")
    someone = follower(fake)
    assert Api(fake, "customers").get("externalcontact/get_follow_user_list")["errcode"] == 0
    assert Api(fake, "customers").get("externalcontact/list", userid=someone.userid)["errcode"] == 0


def test_new_corp_refuses_the_customer_secret_and_needs_the_authorised_app(make_fake_wecom):
    fake = make_fake_wecom(users=40, departments=4, customer_contact="app")
    someone = follower(fake)
    customers, app = Api(fake, "customers"), Api(fake, "app")
    assert customers.get("externalcontact/get_follow_user_list")["errcode"] == 48002
    assert customers.get("externalcontact/list", userid=someone.userid)["errcode"] == 48002
    assert app.get("externalcontact/get_follow_user_list")["errcode"] == 48002  # not yet authorised
    fake.customer_app_authorised = True
    answer = app.get("externalcontact/get_follow_user_list")
    assert answer["errcode"] == 0 and someone.userid in answer["follow_user"]
    assert app.get("externalcontact/list", userid=someone.userid)["errcode"] == 0


def test_the_app_lists_only_follow_users_in_its_visible_range(make_fake_wecom):
    fake = make_fake_wecom(users=60, departments=6, customer_contact="app", customer_app_authorised=True)
    someone = follower(fake)
    fake.org.set_visible_range(users=[someone.userid])
    assert Api(fake, "app").get("externalcontact/get_follow_user_list")["follow_user"] == [someone.userid]


# Two-step verification (docs 99499, 99500, 99521) ---------------------------------------------------
def test_contact_secret_exchanges_the_page_code_and_confirms(fake_wecom):
    userid = active_userids(fake_wecom, 1)[0]
    contacts = Api(fake_wecom, "contacts")
    code = fake_wecom.issue_tfa_code(userid)
    info = contacts.post("auth/get_tfa_info", {"code": code})
    assert info["errcode"] == 0 and info["userid"] == userid
    assert contacts.post("auth/get_tfa_info", {"code": code})["errcode"] == 40029  # single use
    assert contacts.post("user/tfa_succ", {"userid": userid, "tfa_code": "forged"})["errcode"] == 40058
    assert userid not in fake_wecom.authsucc_users
    assert contacts.post("user/tfa_succ", {"userid": userid, "tfa_code": info["tfa_code"]})["errcode"] == 0
    assert userid in fake_wecom.authsucc_users


def test_app_exchanges_only_its_own_oauth_page_code_for_members_it_sees(fake_wecom):
    inside, outside = active_userids(fake_wecom, 2)
    app = Api(fake_wecom, "app")
    # The page is WeCom's custom page: only the contact-sync secret may exchange its code.
    assert app.post("auth/get_tfa_info", {"code": fake_wecom.issue_tfa_code(inside)})["errcode"] == 40029
    fake_wecom.two_step_page = "app_oauth"
    fake_wecom.org.set_visible_range(users=[inside])
    assert app.post("auth/get_tfa_info", {"code": fake_wecom.issue_tfa_code(outside)})["errcode"] == 60011
    info = app.post("auth/get_tfa_info", {"code": fake_wecom.issue_tfa_code(inside)})
    assert info["errcode"] == 0
    assert app.post("user/tfa_succ", {"userid": inside, "tfa_code": info["tfa_code"]})["errcode"] == 0
    assert inside in fake_wecom.authsucc_users and outside not in fake_wecom.authsucc_users


def test_a_page_code_expires_after_five_minutes(fake_wecom):
    code = fake_wecom.issue_tfa_code(active_userids(fake_wecom, 1)[0])
    fake_wecom.advance_time(301)
    assert Api(fake_wecom, "contacts").post("auth/get_tfa_info", {"code": code})["errcode"] == 40029


def test_no_sign_in_code_for_a_member_outside_the_visible_range(fake_wecom):
    inside, outside = active_userids(fake_wecom, 2)
    fake_wecom.org.set_visible_range(users=[inside])
    with pytest.raises(FakeWeComError) as info:
        fake_wecom.issue_oauth_code(userid=outside)
    assert info.value.errcode == 60011
    code = fake_wecom.issue_oauth_code(userid=inside)
    assert Api(fake_wecom, "app").get("auth/getuserinfo", code=code)["userid"] == inside


# Messages (doc 90236) ---------------------------------------------------------------------------------
def test_recipients_outside_the_visible_range_are_invalid_and_lowercased(fake_wecom):
    fake_wecom.add_user("InSide", "里面", department=[1])
    fake_wecom.add_user("OutSide", "外面", department=[1])
    fake_wecom.org.set_visible_range(users=["InSide"])
    answer = Api(fake_wecom, "app").send(touser="inside|OutSide|Nobody")
    assert answer["errcode"] == 0
    assert answer["invaliduser"] == "outside|nobody"
    assert [d["userid"] for d in fake_wecom.deliveries] == ["InSide"]  # matched ignoring case
    assert Api(fake_wecom, "app").send(touser="OutSide")["errcode"] == 81013


def test_departments_outside_the_range_are_invalidparty(fake_wecom):
    dept = next(d for d in fake_wecom.org.departments.values() if d.id != 1 and d.members)
    other = next(d for d in fake_wecom.org.departments.values()
                 if d.id not in (1, dept.id) and d.parentid == 1 and d.id != dept.parentid)
    fake_wecom.org.set_visible_range(departments=[other.id])
    answer = Api(fake_wecom, "app").send(toparty=f"{dept.id}|{other.id}")
    if fake_wecom.org.app_sees_department(dept):
        return  # the generated tree nested dept under other; nothing to learn from this seed
    assert str(dept.id) in answer["invalidparty"].split("|")


def test_the_daily_quota_is_account_limit_times_200(make_fake_wecom):
    fake = make_fake_wecom(users=20, departments=2, account_limit=1)
    userids = active_userids(fake, 3)
    app = Api(fake, "app")
    assert fake.daily_message_quota == 200
    for _ in range(66):
        assert app.send(touser="|".join(userids), text={"content": "x"})["errcode"] == 0
    assert fake.stats()["messages_today"] == 198
    assert app.send(touser="|".join(userids))["errcode"] == 45009  # 201 > 200: refused, nothing sent
    assert app.send(touser=userids[0], text={"content": "y"})["errcode"] == 0  # 199
    fake.advance_time(86400)
    app.token = app.gettoken()["access_token"]
    assert app.send(touser="|".join(userids), text={"content": "z"})["errcode"] == 0


# Media (doc 90253) ------------------------------------------------------------------------------------
def test_media_ids_expire_after_three_days(fake_wecom):
    app = Api(fake_wecom, "app")
    response = requests.post(f"{fake_wecom.api_base}/cgi-bin/media/upload",
                             params={"access_token": app.token, "type": "file"},
                             files={"media": ("a.txt", io.BytesIO(b"hello world"))}, timeout=TIMEOUT)
    media_id = response.json()["media_id"]
    userid = active_userids(fake_wecom, 1)[0]
    assert app.send(touser=userid, msgtype="file", file={"media_id": media_id})["errcode"] == 0
    fake_wecom.advance_time(3 * 86400)
    app.token = app.gettoken()["access_token"]
    assert app.send(touser=userid, msgtype="file", file={"media_id": media_id})["errcode"] == 40007


# Call counts (doc 90454) ------------------------------------------------------------------------------
def test_message_send_and_a_valid_code_exchange_are_not_counted(fake_wecom):
    app = Api(fake_wecom, "app")
    fake_wecom.reset_stats()
    userid = active_userids(fake_wecom, 1)[0]
    app.send(touser=userid)
    assert app.get("auth/getuserinfo", code=fake_wecom.issue_oauth_code(userid))["errcode"] == 0
    assert app.get("auth/getuserinfo", code="spent")["errcode"] == 40029
    app.get("user/get", userid=userid)
    stats = fake_wecom.stats()
    assert stats["calls"] == {"message/send": 1, "auth/getuserinfo": 2, "user/get": 1}
    assert stats["quota_calls"] == {"auth/getuserinfo": 1, "user/get": 1}

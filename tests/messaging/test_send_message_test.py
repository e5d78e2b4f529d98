"""JeecgBoot's test-push endpoint, POST /sys/thirdApp/sendMessageTest, over real HTTP to the fake WeCom:
every envelope case, tenant isolation, and that nothing is sent when the request is invalid."""

import time

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Membership, Tenant
from tests.factories import config_from_fake, make_member, make_tenant, make_user
from tests.messaging.test_messaging import active_userids, bind, point_at
from wecom_integration.client.tokens import clear_memo
from wecom_integration.models import MessageLog, WeComUser
from wecom_integration.testing import FakeWeCom

pytestmark = pytest.mark.django_db
URL = "/sys/thirdApp/sendMessageTest"


@pytest.fixture(autouse=True)
def _fresh_tokens():
    cache.clear()
    clear_memo()
    yield
    clear_memo()


@pytest.fixture
def fake():
    with FakeWeCom(users=40, departments=5, seed=11) as server, point_at(server):
        yield server


@pytest.fixture
def tenant(fake):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake)
    return tenant


@pytest.fixture
def caller(tenant):
    """A tenant admin: sending needs the admin role by default (tests/messaging/test_send_permissions.py)."""
    user = make_user("caller")
    make_member(user, tenant, role=Membership.Role.ADMIN)
    return user


def token_for(user):
    return Token.objects.get_or_create(user=user)[0].key


def post(body, user=None, tenant=None, token=None):
    headers = {"HTTP_ACCEPT_LANGUAGE": "en"}
    if user is not None or token is not None:
        headers["HTTP_X_ACCESS_TOKEN"] = token if token is not None else token_for(user)
    if tenant is not None:
        headers["HTTP_X_TENANT_ID"] = str(tenant.pk)
    return APIClient().post(URL, body, format="json", **headers)


def body(**fields):
    return {"app": "WECHAT_ENTERPRISE", "receiver": "", "sendAll": False, "content": "测试消息", **fields}


def assert_envelope(answer, status, success):
    assert answer.status_code == status, answer.content
    data = answer.json()
    assert set(data) == {"success", "message", "code", "result", "timestamp"} | (set() if success else {"error"})
    if not success:
        assert isinstance(data["error"], str) and data["error"]
    assert data["success"] is success
    assert data["code"] == (200 if success else 500)
    assert isinstance(data["message"], str) and data["message"]
    # Milliseconds, now.
    assert abs(data["timestamp"] - time.time() * 1000) < 60_000
    return data


def assert_nothing_sent(fake):
    assert fake.calls["message/send"] == 0
    assert fake.deliveries == []
    assert not MessageLog.objects.exists()


# Success ---------------------------------------------------------------------------------------------


def test_sends_to_receivers_and_answers_the_msgid(fake, tenant, caller):
    userids = active_userids(fake, 2)
    names = bind(tenant, userids)
    data = assert_envelope(post(body(receiver=",".join(names.values())), caller, tenant), 200, True)
    result = data["result"]
    assert result["msgid"] and result["msgid"] == fake.deliveries[0]["msgid"]
    assert result["invalid_receivers"] == [] and result["unbound_receivers"] == []
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(userids)
    assert all(d["msgtype"] == "text" and d["content"] == {"content": "测试消息"} for d in fake.deliveries)
    log = MessageLog.objects.get(pk=result["log_id"])
    assert log.sender == caller and log.source == "test-push" and log.status == MessageLog.Status.SENT


def test_receiver_list_tolerates_spaces_and_empty_items(fake, tenant, caller):
    names = list(bind(tenant, active_userids(fake, 2)).values())
    data = assert_envelope(post(body(receiver=f" {names[0]} ,, {names[1]} ,"), caller, tenant), 200, True)
    assert len(fake.deliveries) == 2 and data["result"]["msgid"]


def test_send_all_goes_to_at_all(fake, tenant, caller):
    data = assert_envelope(post(body(sendAll=True), caller, tenant), 200, True)
    assert fake.sent_messages[0]["touser"] == "@all"
    assert len(fake.deliveries) == len(active_userids(fake)) and data["result"]["msgid"]


def test_default_tenant_is_zero(fake):
    tenant0 = Tenant.objects.get(pk=0)
    config_from_fake(tenant0, fake)
    user = make_user("zero")
    make_member(user, tenant0, role=Membership.Role.ADMIN)
    names = bind(tenant0, active_userids(fake, 1))
    assert_envelope(post(body(receiver=next(iter(names.values()))), user), 200, True)
    assert len(fake.deliveries) == 1


def test_exactly_2048_bytes_is_accepted(fake, tenant, caller):
    names = bind(tenant, active_userids(fake, 1))
    content = "中" * 682 + "ab"
    assert_envelope(post(body(receiver=next(iter(names.values())), content=content), caller, tenant), 200, True)
    assert fake.deliveries[0]["content"]["content"] == content


# Receivers WeCom rejects, receivers with no binding -----------------------------------------------------


def test_unbound_receivers_are_reported_and_the_rest_sent(fake, tenant, caller):
    names = list(bind(tenant, active_userids(fake, 1)).values())
    loner = make_user("loner")
    make_member(loner, tenant)
    data = assert_envelope(post(body(receiver=f"{names[0]},loner"), caller, tenant), 200, True)
    assert data["result"]["unbound_receivers"] == ["loner"]
    assert len(fake.deliveries) == 1


def test_only_unbound_receivers_is_400(fake, tenant, caller):
    loner = make_user("loner")
    make_member(loner, tenant)
    data = assert_envelope(post(body(receiver="loner"), caller, tenant), 400, False)
    assert data["result"]["unbound_receivers"] == ["loner"] and "loner" in data["message"]
    assert_nothing_sent(fake)


def test_invalid_receivers_are_mapped_back_to_usernames(fake, tenant, caller):
    good, gone = active_userids(fake, 2)
    names = bind(tenant, [good, gone])
    fake.delete_user(gone)  # WeCom no longer knows this member; our binding does not know yet
    data = assert_envelope(post(body(receiver=",".join(names.values())), caller, tenant), 200, True)
    assert data["result"]["invalid_receivers"] == [names[gone]]
    assert [d["userid"] for d in fake.deliveries] == [good]
    assert MessageLog.objects.get().invalid_users == [gone]


def test_all_receivers_invalid_is_not_success(fake, tenant, caller):
    (gone,) = active_userids(fake, 1)
    names = bind(tenant, [gone])
    fake.delete_user(gone)
    data = assert_envelope(post(body(receiver=names[gone]), caller, tenant), 502, False)
    assert data["result"]["errcode"] == 81013
    assert data["result"]["invalid_receivers"] == [names[gone]]
    assert fake.deliveries == []


# WeCom errors: success is false (JeecgBoot said true) -------------------------------------------------------


def test_wecom_error_is_not_success(fake, tenant, caller):
    names = bind(tenant, active_userids(fake, 1))
    fake.set_faults(error_rate=1.0, errcodes=(60020,), paths=["message/send"])
    data = assert_envelope(post(body(receiver=next(iter(names.values()))), caller, tenant), 502, False)
    assert data["result"]["errcode"] == 60020 and data["result"]["msgid"] == ""
    assert "trusted IP" in data["message"]
    assert MessageLog.objects.get().status == MessageLog.Status.FAILED


def test_wecom_rate_limit_is_503(fake, tenant, caller):
    names = bind(tenant, active_userids(fake, 1))
    fake.set_faults(error_rate=1.0, errcodes=(45009,), paths=["message/send"])
    data = assert_envelope(post(body(receiver=next(iter(names.values()))), caller, tenant), 503, False)
    assert data["result"]["errcode"] == 45009


def test_wrong_secret_is_not_success(fake, tenant, caller):
    names = bind(tenant, active_userids(fake, 1))
    config = tenant.wecom_config
    config.secret = "not-the-secret-at-all"
    config.save()
    data = assert_envelope(post(body(receiver=next(iter(names.values()))), caller, tenant), 502, False)
    assert data["result"]["errcode"] == 40001
    assert fake.deliveries == []


# Invalid requests: 4xx and nothing sent -----------------------------------------------------------------------


def test_no_token_is_401(fake, tenant):
    assert_envelope(post(body(sendAll=True), tenant=tenant), 401, False)
    assert_nothing_sent(fake)


@pytest.mark.parametrize("token", ["", "0123456789abcdef0123456789abcdef01234567"])
def test_bad_token_is_401(fake, tenant, token):
    assert_envelope(post(body(sendAll=True), token=token, tenant=tenant), 401, False)
    assert_nothing_sent(fake)


def test_tenant_isolation(fake, tenant, make_fake_wecom):
    # A member of tenant A, with A's token, naming tenant B: 403, nothing sent to either corp.
    other_fake = make_fake_wecom(users=10, departments=2, seed=2)
    other = make_tenant("other")
    config_from_fake(other, other_fake)
    user_a = make_user("a_member")
    make_member(user_a, tenant)
    bind(other, active_userids(other_fake, 1))
    data = assert_envelope(post(body(sendAll=True), user_a, other), 403, False)
    assert "member" in data["message"]
    assert_nothing_sent(fake)
    assert other_fake.calls["message/send"] == 0


@pytest.mark.parametrize("status", [Membership.Status.PENDING, Membership.Status.INACTIVE])
def test_inactive_member_is_403(fake, tenant, status):
    user = make_user("waiting")
    make_member(user, tenant, status=status)
    assert_envelope(post(body(sendAll=True), user, tenant), 403, False)
    assert_nothing_sent(fake)


def test_unknown_app_is_400(fake, tenant, caller):
    data = assert_envelope(post(body(app="DINGTALK", sendAll=True), caller, tenant), 400, False)
    assert "不识别的第三方APP" in data["message"] and "DINGTALK" in data["message"]
    assert "app" in data["result"]["errors"]
    assert_nothing_sent(fake)


def test_not_configured_is_400(fake, caller):
    bare = make_tenant("bare")
    make_member(caller, bare, role=Membership.Role.ADMIN)
    data = assert_envelope(post(body(sendAll=True), caller, bare), 400, False)
    assert "企业微信尚未配置" in data["message"]
    assert_nothing_sent(fake)


def test_disabled_configuration_is_400(fake, tenant, caller):
    tenant.wecom_config.enabled = False
    tenant.wecom_config.save()
    assert_envelope(post(body(sendAll=True), caller, tenant), 400, False)
    assert_nothing_sent(fake)


@pytest.mark.parametrize(
    "content,phrase",
    [("", "empty"), ("   \n", "empty"), ("中" * 683, "2049 bytes"), ("a" * 2049, "2049 bytes")],
)
def test_bad_content_is_400(fake, tenant, caller, content, phrase):
    bind(tenant, active_userids(fake, 1))
    data = assert_envelope(post(body(sendAll=True, content=content), caller, tenant), 400, False)
    assert phrase in data["message"]
    assert "content" in data["result"]["errors"]
    assert_nothing_sent(fake)


def test_missing_content_is_400(fake, tenant, caller):
    request = body(sendAll=True)
    del request["content"]
    assert_envelope(post(request, caller, tenant), 400, False)
    assert_nothing_sent(fake)


@pytest.mark.parametrize("fields", [{"receiver": "", "sendAll": False}, {"receiver": "x", "sendAll": True}])
def test_exactly_one_of_receiver_and_send_all(fake, tenant, caller, fields):
    make_member(make_user("x"), tenant)
    assert_envelope(post(body(**fields), caller, tenant), 400, False)
    assert_nothing_sent(fake)


def test_unknown_receivers_are_400_and_nothing_is_sent(fake, tenant, caller):
    names = list(bind(tenant, active_userids(fake, 1)).values())
    stranger = make_user("stranger")  # exists, but not a member of this tenant
    data = assert_envelope(post(body(receiver=f"{names[0]},ghost,stranger"), caller, tenant), 400, False)
    assert data["result"]["unknown_receivers"] == ["ghost", "stranger"]
    assert "ghost" in data["message"]
    assert stranger.pk and not WeComUser.objects.filter(userid="ghost").exists()
    assert_nothing_sent(fake)


def test_body_must_be_json(fake, tenant, caller):
    answer = APIClient().post(
        URL,
        "app=WECHAT_ENTERPRISE&sendAll=true&content=x",
        content_type="application/x-www-form-urlencoded",
        HTTP_X_ACCESS_TOKEN=token_for(caller),
        HTTP_X_TENANT_ID=str(tenant.pk),
    )
    assert_envelope(answer, 415, False)
    assert_nothing_sent(fake)


def test_get_is_405_in_the_envelope(fake, tenant, caller):
    answer = APIClient().get(URL, HTTP_X_ACCESS_TOKEN=token_for(caller), HTTP_X_TENANT_ID=str(tenant.pk))
    assert_envelope(answer, 405, False)


def test_unknown_tenant_is_404(fake, caller):
    answer = APIClient().post(
        URL, body(sendAll=True), format="json", HTTP_X_ACCESS_TOKEN=token_for(caller), HTTP_X_TENANT_ID="987654"
    )
    assert_envelope(answer, 404, False)
    assert_nothing_sent(fake)

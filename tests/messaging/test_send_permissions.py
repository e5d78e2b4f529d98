"""Who may send to whom through the API (issue 16, item 2), against the fake WeCom.

Every sending endpoint of the API is listed in SENDING_ENDPOINTS (a test checks the list against the
URL resolver: a POST endpoint that reaches ``message/send`` and is not listed fails). A tenant admin
sends to chosen members and to everyone; an ordinary member sends nothing unless the tenant's WeCom
configuration allows members to send, and then to chosen members only, never to @all.
"""

import pytest
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_tenant_admin, make_user
from tests.messaging.test_messaging import active_userids, bind, point_at
from tests.security.test_isolation_sweep import walk
from wecom_integration.login.adapter import DefaultWeComAdapter
from wecom_integration.models import MessageLog

pytestmark = pytest.mark.django_db

TEST_PUSH = "/sys/thirdApp/sendMessageTest"


def to_receivers(names):
    return {"app": "WECHAT_ENTERPRISE", "receiver": ",".join(names), "content": "权限测试"}


def to_all(names):
    return {"app": "WECHAT_ENTERPRISE", "sendAll": True, "content": "权限测试"}


def api_to_receivers(names):
    return {"msgtype": "text", "content": {"content": "权限测试"}, "usernames": list(names)}


def api_to_all(names):
    return {"msgtype": "text", "content": {"content": "权限测试"}, "to_all": True}


# Every API endpoint that sends, with the bodies that send to chosen members and to everyone.
SENDING_ENDPOINTS = {
    "wecom_integration:send-message-test": (TEST_PUSH, to_receivers, to_all),
    "wecom_integration:api-messages": ("/api/messages/", api_to_receivers, api_to_all),
}
SENT = {200, 201}  # the test push answers its envelope with 200; the messages API creates a log entry (201)


def error_of(answer):
    """The stable error code: the test push's envelope says ``error``, the REST API ``code``."""
    data = answer.json()
    return data.get("error") or data.get("code")


def message_of(answer):
    data = answer.json()
    return data.get("message") or data.get("detail")


@pytest.fixture
def fake(make_fake_wecom):
    server = make_fake_wecom(users=20, departments=3, seed=16)
    with point_at(server):
        yield server


@pytest.fixture
def tenant(fake):
    tenant = make_tenant("sendperm")
    config_from_fake(tenant, fake)
    return tenant


@pytest.fixture
def receivers(fake, tenant):
    return bind(tenant, active_userids(fake, 2))


def call(user, tenant, path, body, language="en"):
    return APIClient().post(
        path,
        body,
        format="json",
        HTTP_X_ACCESS_TOKEN=Token.objects.get_or_create(user=user)[0].key,
        HTTP_X_TENANT_ID=str(tenant.pk),
        HTTP_ACCEPT_LANGUAGE=language,
    )


def allow_members(tenant, allowed=True):
    tenant.wecom_config.members_may_send = allowed
    tenant.wecom_config.save(update_fields=["members_may_send"])


def member_of(tenant, name="plainmember"):
    user = make_user(name)
    make_member(user, tenant)
    return user


def admin_of(tenant, name="tenantadmin"):
    user = make_user(name)
    make_member(user, tenant, role=Membership.Role.ADMIN)
    return user


def assert_refused(answer, fake, code):
    assert answer.status_code == 403, answer.content
    assert error_of(answer) == code
    assert fake.calls["message/send"] == 0 and fake.deliveries == []
    assert not MessageLog.objects.exists()


ENDPOINTS = pytest.mark.parametrize("name", sorted(SENDING_ENDPOINTS))


def test_every_sending_endpoint_is_listed():
    """The API's POST endpoints are the test push and the sync's start and confirm; only the first sends.
    A new POST endpoint fails here until it is classified: listed in SENDING_ENDPOINTS, or not sending."""
    not_sending = {
        "wecom_integration:api-wecom-sync",
        "wecom_integration:api-wecom-sync-confirm",
        "wecom_integration:api-approvals",  # submits an approval (admins only), sends no message
    }
    posting = {
        label
        for label, route, pattern in walk()
        if route.startswith(("api/", "sys/")) and hasattr(getattr(pattern.callback, "cls", None), "post")
    }
    assert (
        posting - {"wecom_integration:api-schema", "wecom_integration:api-docs"} == set(SENDING_ENDPOINTS) | not_sending
    )


@ENDPOINTS
def test_admin_sends_to_members_and_to_everyone(fake, tenant, receivers, name):
    path, members_body, everyone_body = SENDING_ENDPOINTS[name]
    admin = admin_of(tenant)
    answer = call(admin, tenant, path, members_body(list(receivers.values())))
    assert answer.status_code in SENT, answer.content
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(receivers)
    answer = call(admin, tenant, path, everyone_body(list(receivers.values())))
    assert answer.status_code in SENT, answer.content
    assert fake.sent_messages[-1]["touser"] == "@all"


@ENDPOINTS
@pytest.mark.parametrize("everyone", [False, True], ids=["members", "everyone"])
def test_member_sends_nothing_by_default(fake, tenant, receivers, name, everyone):
    path, members_body, everyone_body = SENDING_ENDPOINTS[name]
    body = (everyone_body if everyone else members_body)(list(receivers.values()))
    answer = call(member_of(tenant), tenant, path, body)
    assert_refused(answer, fake, "sending_not_allowed")
    assert message_of(answer) == "Only the administrators of this tenant may send messages."


@ENDPOINTS
def test_member_sends_to_members_where_the_tenant_allows_it(fake, tenant, receivers, name):
    path, members_body, _everyone = SENDING_ENDPOINTS[name]
    allow_members(tenant)
    member = member_of(tenant)
    answer = call(member, tenant, path, members_body(list(receivers.values())))
    assert answer.status_code in SENT, answer.content
    assert sorted(d["userid"] for d in fake.deliveries) == sorted(receivers)
    assert MessageLog.objects.get().sender == member


@ENDPOINTS
@pytest.mark.parametrize("language,phrase", [("en", "to everyone"), ("zh-hans", "全员")])
def test_member_never_sends_to_everyone(fake, tenant, receivers, name, language, phrase):
    path, _members, everyone_body = SENDING_ENDPOINTS[name]
    allow_members(tenant)
    answer = call(member_of(tenant), tenant, path, everyone_body(list(receivers.values())), language)
    assert_refused(answer, fake, "recipients_need_admin")
    assert phrase in message_of(answer)


@ENDPOINTS
def test_the_setting_of_one_tenant_does_not_open_another(fake, tenant, receivers, name, make_fake_wecom):
    path, members_body, _everyone = SENDING_ENDPOINTS[name]
    allow_members(tenant)
    other_fake = make_fake_wecom(users=5, departments=1, seed=17)
    other = make_tenant("sendperm-b")
    config_from_fake(other, other_fake)
    other_names = bind(other, active_userids(other_fake, 1))
    member_of_other = member_of(other, "bmember")
    with override_settings(WECOM={"API_BASE": other_fake.api_base}):
        answer = call(member_of_other, other, path, members_body(list(other_names.values())))
    assert answer.status_code == 403 and error_of(answer) == "sending_not_allowed"
    assert other_fake.calls["message/send"] == 0 and fake.calls["message/send"] == 0


@ENDPOINTS
def test_the_other_tenants_admin_is_refused(fake, tenant, receivers, name):
    path, members_body, everyone_body = SENDING_ENDPOINTS[name]
    allow_members(tenant)
    stranger = admin_of(make_tenant("sendperm-c"), "otheradmin")
    for body in (members_body, everyone_body):
        answer = call(stranger, tenant, path, body(list(receivers.values())))
        assert_refused(answer, fake, "not_tenant_member")


@ENDPOINTS
def test_inactive_admin_membership_sends_nothing(fake, tenant, receivers, name):
    path, members_body, _everyone = SENDING_ENDPOINTS[name]
    user = make_user("formeradmin")
    make_member(user, tenant, role=Membership.Role.ADMIN, status=Membership.Status.INACTIVE)
    assert_refused(call(user, tenant, path, members_body(list(receivers.values()))), fake, "not_tenant_member")


def test_members_may_send_is_off_by_default_and_a_tenant_admin_sets_it(client, tenant):
    config = tenant.wecom_config
    assert config.members_may_send is False
    admin = make_tenant_admin("cfgadmin", tenant)
    client.force_login(admin)
    page = client.get(f"/admin/wecom_integration/wecomconfig/{config.pk}/change/")
    assert page.status_code == 200
    field = page.context["adminform"].form.fields["members_may_send"]
    assert str(field.label) == "Members may send messages"
    assert "members_may_send" not in page.context["adminform"].readonly_fields


def test_members_may_send_label_is_translated():
    from django.utils import translation

    from wecom_integration.models import WeComConfig

    with translation.override("zh-hans"):
        label = str(WeComConfig._meta.get_field("members_may_send").verbose_name)
    assert label != "members may send messages" and label


class ManagersAdapter(DefaultWeComAdapter):
    """A host whose own model says who manages a tenant: here, any member whose username starts "mgr-"."""

    def is_tenant_admin(self, user, tenant):
        return self.is_tenant_member(user, tenant) and user.get_username().startswith("mgr-")


class BrokenAdapter(DefaultWeComAdapter):
    """A host adapter that fails with a message naming a host: the answer must not repeat it."""

    def is_tenant_member(self, user, tenant):
        raise RuntimeError("lookup failed at http://roles.internal.example:8443/tenants")


def test_roles_come_from_the_adapter(fake, tenant, receivers):
    manager = member_of(tenant, "mgr-ops")
    adapter = {"ADAPTER": "tests.messaging.test_send_permissions.ManagersAdapter", "API_BASE": fake.api_base}
    with override_settings(WECOM=adapter):
        answer = call(manager, tenant, TEST_PUSH, to_all(receivers))
        assert answer.status_code == 200, answer.content
        assert fake.sent_messages[-1]["touser"] == "@all"
        # The default admin role is no longer what counts.
        assert call(admin_of(tenant), tenant, TEST_PUSH, to_all(receivers)).status_code == 403


def test_a_failing_adapter_gives_a_plain_500(fake, tenant, receivers, caplog):
    with override_settings(WECOM={"ADAPTER": "tests.messaging.test_send_permissions.BrokenAdapter"}):
        answer = call(admin_of(tenant), tenant, TEST_PUSH, to_all(receivers))
        users = APIClient().get(
            "/api/wecom/users/",
            HTTP_X_ACCESS_TOKEN=Token.objects.get(user__username="tenantadmin").key,
            HTTP_X_TENANT_ID=str(tenant.pk),
        )
    assert answer.status_code == 500 and answer.json()["error"] == "server_error"
    assert users.status_code == 500 and users.json()["code"] == "server_error"
    for text in (answer.content, users.content):
        assert b"roles.internal" not in text and b"RuntimeError" not in text and b"http" not in text
    assert fake.calls["message/send"] == 0
    assert any("roles.internal" in str(record.exc_info) for record in caplog.records if record.exc_info)

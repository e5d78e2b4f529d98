"""The API's security does not depend on the host's settings (issue 15, item 3).

Every endpoint under /api/ and /sys/ is called anonymously under DRF's own defaults (``REST_FRAMEWORK = {}``:
AllowAny, session and basic authentication) and under a hostile default (AllowAny, session authentication,
an exception handler that would hand out exception text): each answers 401, whatever the host says. A
signed-in session of a superuser is no credential for the API unless the host adds session authentication
through ``WECOM["API_AUTHENTICATION_CLASSES"]``. A failed delivery to an unreachable WeCom answers a clean
error: a message and a stable code, no URL, no host, no port.
"""

import re
import socket

import pytest
from django.test import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Membership
from tests.factories import config_from_fake, make_member, make_tenant, make_user
from tests.messaging.test_messaging import active_userids, bind, point_at
from tests.security.test_isolation_sweep import walk
from wecom_integration.models import MessageLog

pytestmark = pytest.mark.django_db

API_PREFIXES = ("api/", "sys/")
# Public by design: the schema and its docs page describe the API; they carry no tenant's data.
PUBLIC = {"wecom_integration:api-schema", "wecom_integration:api-docs"}


def hostile_exception_handler(exc, context):
    """What a careless host might install: the exception's text in every answer."""
    from rest_framework.response import Response

    return Response({"leak": repr(exc)}, status=418)


DRF_DEFAULTS = {}
HOSTILE = {
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "EXCEPTION_HANDLER": "tests.host.test_api_host_defaults.hostile_exception_handler",
    "DEFAULT_PAGINATION_CLASS": None,
    "UNAUTHENTICATED_USER": None,
}
HOST_SETTINGS = pytest.mark.parametrize("rest_framework", [DRF_DEFAULTS, HOSTILE], ids=["drf-defaults", "hostile"])


def api_urls(tenant_id, object_id):
    """(name, path, methods) of every API URL of the resolver, arguments filled."""
    found = []
    for label, route, pattern in walk():
        if not route.startswith(API_PREFIXES) or label in PUBLIC:
            continue
        # Any value will do: the call is refused before the view looks at it.
        path = "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: str(object_id) if m[1] == "int" else "x", route)
        assert "<" not in path and "(?P" not in path, f"teach this test the arguments of {route}"
        view = pattern.callback.cls
        methods = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view, m)]
        found.append((label, path, methods))
    return found


@pytest.fixture
def tenant():
    tenant = make_tenant("hostdef")
    make_member(make_user("someone"), tenant, role=Membership.Role.ADMIN)
    return tenant


@HOST_SETTINGS
def test_every_endpoint_refuses_anonymous_calls(tenant, rest_framework):
    urls = api_urls(tenant.pk, 1)
    assert {"wecom_integration:send-message-test", "wecom_integration:api-wecom-users"} <= {n for n, _, _ in urls}
    with override_settings(REST_FRAMEWORK=rest_framework):
        client = APIClient()
        for name, path, methods in urls:
            for method in methods:
                answer = getattr(client, method)(path, {}, format="json", HTTP_X_TENANT_ID=str(tenant.pk))
                assert answer.status_code == 401, (name, method, answer.status_code, answer.content)
                assert b"leak" not in answer.content
                assert answer["WWW-Authenticate"] == "X-Access-Token"


@HOST_SETTINGS
def test_a_session_is_no_credential_for_the_api(client, tenant, rest_framework):
    root = make_user("root", superuser=True)
    client.force_login(root)
    with override_settings(REST_FRAMEWORK=rest_framework):
        answer = client.get("/api/wecom/users/", HTTP_X_TENANT_ID=str(tenant.pk))
        assert answer.status_code == 401
        answer = client.post(
            "/sys/thirdApp/sendMessageTest",
            {"app": "WECHAT_ENTERPRISE", "sendAll": True, "content": "x"},
            content_type="application/json",
            HTTP_X_TENANT_ID=str(tenant.pk),
        )
        assert answer.status_code == 401
        assert answer.json()["error"] == "not_authenticated"


@HOST_SETTINGS
def test_a_member_still_needs_the_right_role(tenant, rest_framework):
    member = make_user("plain")
    make_member(member, tenant)
    token = Token.objects.create(user=member).key
    headers = {"HTTP_X_ACCESS_TOKEN": token, "HTTP_X_TENANT_ID": str(tenant.pk), "HTTP_ACCEPT_LANGUAGE": "en"}
    with override_settings(REST_FRAMEWORK=rest_framework):
        client = APIClient()
        assert client.get("/api/wecom/users/", **headers).status_code == 200
        refused = client.get("/api/messages/", **headers)
        assert refused.status_code == 403
        assert refused.json() == {"detail": "You are not an administrator of this tenant.", "code": "not_tenant_admin"}
        # Another tenant's member: 403 with the member's message, not the host's handler.
        other = make_tenant("hostdef-other")
        answer = client.get("/api/wecom/users/", **{**headers, "HTTP_X_TENANT_ID": str(other.pk)})
        assert answer.status_code == 403 and answer.json()["code"] == "not_tenant_member"


@HOST_SETTINGS
def test_pagination_is_the_apps_own(tenant, rest_framework):
    admin = make_user("pager")
    make_member(admin, tenant, role=Membership.Role.ADMIN)
    MessageLog.objects.bulk_create(
        [MessageLog(tenant=tenant, msgtype="text", content={"content": str(i)}) for i in range(105)]
    )
    with override_settings(REST_FRAMEWORK=rest_framework):
        answer = APIClient().get(
            "/api/messages/",
            HTTP_X_ACCESS_TOKEN=Token.objects.create(user=admin).key,
            HTTP_X_TENANT_ID=str(tenant.pk),
        )
    assert answer.status_code == 200
    assert answer.json()["count"] == 105 and len(answer.json()["results"]) == 100


@HOST_SETTINGS
def test_the_schema_is_served_under_any_host_defaults(rest_framework):
    with override_settings(REST_FRAMEWORK=rest_framework):
        answer = APIClient().get("/api/schema/")
    assert answer.status_code == 200
    assert b"/sys/thirdApp/sendMessageTest" in answer.content and b"X-Access-Token" in answer.content


def test_the_host_adds_its_own_authentication_through_wecom_settings(client, tenant):
    member = make_user("sessioned")
    make_member(member, tenant)
    client.force_login(member)
    path, headers = "/api/tenant/", {"HTTP_X_TENANT_ID": str(tenant.pk)}
    assert client.get(path, **headers).status_code == 401
    extra = ["rest_framework.authentication.SessionAuthentication"]
    with override_settings(WECOM={"API_AUTHENTICATION_CLASSES": extra}, REST_FRAMEWORK={}):
        answer = client.get(path, **headers)
        assert answer.status_code == 200 and answer.json()["username"] == "sessioned"
        # The token still comes first: anonymous calls are 401 naming X-Access-Token.
        anonymous = APIClient().get(path, **headers)
        assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "X-Access-Token"


def closed_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("language,phrase", [("en", "could not be reached"), ("zh-hans", "无法连接")])
def test_unreachable_wecom_gives_a_clean_error(fake_wecom, caplog, language, phrase):
    tenant = make_tenant("unreach")
    config_from_fake(tenant, fake_wecom)
    admin = make_user("sender")
    make_member(admin, tenant, role=Membership.Role.ADMIN)
    names = bind(tenant, active_userids(fake_wecom, 1))
    port = closed_port()
    settings = {"API_BASE": f"http://127.0.0.1:{port}", "BUSY_BACKOFF": 0.001, "BUSY_RETRIES": 1}
    with override_settings(WECOM=settings):
        answer = APIClient().post(
            "/sys/thirdApp/sendMessageTest",
            {"app": "WECHAT_ENTERPRISE", "receiver": next(iter(names.values())), "content": "hi"},
            format="json",
            HTTP_X_ACCESS_TOKEN=Token.objects.create(user=admin).key,
            HTTP_X_TENANT_ID=str(tenant.pk),
            HTTP_ACCEPT_LANGUAGE=language,
        )
    assert answer.status_code == 502
    body = answer.json()
    assert body["success"] is False and body["error"] == "wecom_unreachable"
    assert phrase in body["message"]
    assert body["result"]["errmsg"] == "" and body["result"]["msgid"] == ""
    text = answer.content.decode()
    for leak in ("127.0.0.1", str(port), "http", "Connection", "cgi-bin", "Error"):
        assert leak not in text, leak
    assert fake_wecom.calls["message/send"] == 0
    # The details went to the log instead.
    assert any(str(port) in record.getMessage() for record in caplog.records)


def test_wecom_errmsg_loses_its_urls_in_the_answer(fake_wecom):
    tenant = make_tenant("errurl")
    config_from_fake(tenant, fake_wecom)
    admin = make_user("sender2")
    make_member(admin, tenant, role=Membership.Role.ADMIN)
    names = bind(tenant, active_userids(fake_wecom, 1))
    fake_wecom.set_faults(error_rate=1.0, errcodes=(40003,), paths=["message/send"])
    with point_at(fake_wecom):
        answer = APIClient().post(
            "/sys/thirdApp/sendMessageTest",
            {"app": "WECHAT_ENTERPRISE", "receiver": next(iter(names.values())), "content": "hi"},
            format="json",
            HTTP_X_ACCESS_TOKEN=Token.objects.create(user=admin).key,
            HTTP_X_TENANT_ID=str(tenant.pk),
        )
    assert answer.status_code == 502
    body = answer.json()
    assert body["error"] == "wecom_refused" and body["result"]["errcode"] == 40003
    assert "://" not in answer.content.decode()

"""Sign in with WeCom (issue 7), end to end over HTTP against the fake WeCom, which issues the codes.

Each flow test drives the browser's side with Django's test client: our start view → the WeCom URL
(checked against the documented format) → the state taken from it → a code the fake issues → our
callback → a Django session → ``next``.
"""

import re
import threading
from types import SimpleNamespace
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from django.contrib.auth import authenticate, get_user
from django.http import HttpRequest
from django.test import Client, RequestFactory, TestCase
from django.urls import reverse
from django.utils import translation

from tenants.models import Membership
from tests.factories import config_from_fake, make_config, make_member, make_tenant, make_user
from wecom_integration.login import refusals
from wecom_integration.login import services as flows
from wecom_integration.models import AuditLog, Binding, WeComUser

pytestmark = pytest.mark.django_db

BACKEND = "wecom_integration.login.backends.WeComBackend"
CALLBACK = "/wecom/oauth/callback/"
STATE_RE = re.compile(r"^[A-Za-z0-9]{1,128}$")


# Fixtures and helpers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _backends(settings):
    # The lead adds the backend to config/settings.py; until then the tests add it themselves.
    if BACKEND not in settings.AUTHENTICATION_BACKENDS:
        settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, BACKEND]


@pytest.fixture
def use_fake(settings):
    """Point the client at one fake corp (WeCom has one API base; tests with two corps switch it)."""

    def use(fake):
        settings.WECOM_API_BASE = fake.api_base
        return fake

    return use


@pytest.fixture
def fake(fake_wecom, use_fake):
    fake_wecom.add_user("zhangsan", "张三")
    fake_wecom.add_user("lisi", "李四", position="工程师")
    return use_fake(fake_wecom)


@pytest.fixture
def tenant(fake):
    tenant = make_tenant("acme", "Acme Ltd")
    config_from_fake(tenant, fake)
    return tenant


@pytest.fixture
def browser():
    return Client(headers={"accept-language": "en"})


def bind(tenant, user, userid, *, membership=Membership.Status.ACTIVE, active=True):
    wecom_user, _ = WeComUser.objects.get_or_create(tenant=tenant, userid=userid, defaults={"name": userid})
    if membership is not None:
        make_member(user, tenant, status=membership)
    return Binding.objects.create(tenant=tenant, user=user, wecom_user=wecom_user, is_active=active)


@pytest.fixture
def zhangsan(tenant):
    user = make_user("zhang.san")
    bind(tenant, user, "zhangsan")
    return user


def start(browser, path, **params):
    """GET our start view; returns (WeCom URL, its query as a dict of single values)."""
    response = browser.get(path, params)
    assert response.status_code == 302, response.content
    location = response["Location"]
    query = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
    return location, query


def qr_state(browser, tenant, **params):
    return start(browser, f"/wecom/login/{tenant.pk}/", **params)[1]["state"]


def callback(browser, code, state):
    return browser.get(CALLBACK, {"code": code, "state": state})


def session_user(browser):
    request = HttpRequest()
    request.session = browser.session
    return get_user(request)


def refusal(response):
    match = re.search(rb'data-reason="([a-z_]+)"', response.content)
    return match.group(1).decode() if match else None


# Both flows ------------------------------------------------------------------------------------------


def test_qr_login_follows_documented_url_and_logs_in(browser, fake, tenant, zhangsan):
    location, query = start(browser, f"/wecom/login/{tenant.pk}/", next="/orders/42/?tab=open")
    state = query["state"]
    assert STATE_RE.match(state)
    redirect_uri = quote("http://testserver/wecom/oauth/callback/", safe="")
    assert location == (
        "https://login.work.weixin.qq.com/wwlogin/sso/login?login_type=CorpApp"
        f"&appid={fake.corp_id}&agentid={fake.agent_id}&redirect_uri={redirect_uri}&state={state}"
    )

    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), state)

    assert response.status_code == 302
    assert response["Location"] == "/orders/42/?tab=open"
    assert browser.session["_auth_user_id"] == str(zhangsan.pk)
    assert browser.session["_auth_user_backend"] == BACKEND
    assert session_user(browser) == zhangsan


def test_in_wecom_homepage_start_follows_documented_authorize_url(browser, fake, tenant, zhangsan):
    config = tenant.wecom_config
    homepage = flows.homepage_url(config)
    assert homepage.endswith(f"/wecom/oauth/{tenant.pk}/")

    location, query = start(browser, urlsplit(homepage).path, next="/inbox/")
    state = query["state"]
    assert STATE_RE.match(state)
    redirect_uri = quote("http://testserver/wecom/oauth/callback/", safe="")
    assert location == (
        f"https://open.weixin.qq.com/connect/oauth2/authorize?appid={fake.corp_id}&redirect_uri={redirect_uri}"
        f"&response_type=code&scope=snsapi_base&state={state}&agentid={fake.agent_id}#wechat_redirect"
    )

    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), state)
    assert response.status_code == 302 and response["Location"] == "/inbox/"
    assert session_user(browser) == zhangsan


def test_homepage_urls_for_the_configuration_page(settings, tenant):
    settings.WECOM = {**settings.WECOM, "PUBLIC_BASE_URL": "https://erp.example.com"}
    config = tenant.wecom_config
    urls = flows.homepage_urls(config)
    assert urls["homepage"] == f"https://erp.example.com/wecom/oauth/{tenant.pk}/"
    assert urls["authorize"] == (
        f"https://open.weixin.qq.com/connect/oauth2/authorize?appid={config.corp_id}"
        "&redirect_uri=https%3A%2F%2Ferp.example.com%2Fwecom%2Foauth%2Fcallback%2F"
        f"&response_type=code&scope=snsapi_base&state=STATE&agentid={config.agent_id}#wechat_redirect"
    )
    assert flows.homepage_url(config, next_url="/inbox/") == urls["homepage"] + "?next=%2Finbox%2F"


def test_without_next_goes_to_login_redirect_url(browser, fake, tenant, zhangsan, settings):
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, tenant))
    assert response["Location"] == settings.LOGIN_REDIRECT_URL


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "javascript:alert(1)",
        "http://evil.com/x",
        "https:///evil.com",
        " //evil.com",
    ],
)
def test_next_never_leaves_the_site(browser, fake, tenant, zhangsan, settings, next_url):
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, tenant, next=next_url))
    assert response.status_code == 302
    assert response["Location"] == settings.LOGIN_REDIRECT_URL
    assert session_user(browser) == zhangsan


def test_next_on_this_host_is_kept(browser, fake, tenant, zhangsan):
    state = qr_state(browser, tenant, next="http://testserver/reports/")
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), state)
    assert response["Location"] == "http://testserver/reports/"


# The state -------------------------------------------------------------------------------------------


def test_replayed_state_is_refused(browser, fake, tenant, zhangsan):
    state = qr_state(browser, tenant)
    assert callback(browser, fake.issue_oauth_code(userid="zhangsan"), state).status_code == 302

    # The same browser (same session) with a fresh code: only the state's single use stops it.
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), state)
    assert response.status_code == 400 and refusal(response) == "invalid_state"
    assert b"no longer valid" in response.content


def test_state_only_works_in_the_browser_that_started(fake, tenant, zhangsan):
    owner, attacker = Client(headers={"accept-language": "en"}), Client(headers={"accept-language": "en"})
    state = qr_state(owner, tenant)

    response = callback(attacker, fake.issue_oauth_code(userid="zhangsan"), state)
    assert response.status_code == 400 and refusal(response) == "invalid_state"
    assert "_auth_user_id" not in attacker.session

    # The attempt did not use the owner's state up.
    assert callback(owner, fake.issue_oauth_code(userid="zhangsan"), state).status_code == 302
    assert session_user(owner) == zhangsan


@pytest.mark.parametrize("mangle", ["flip", "truncate", "garbage", "empty"])
def test_forged_state_is_refused(browser, fake, tenant, zhangsan, mangle):
    state = qr_state(browser, tenant)
    forged = {
        "flip": state[:-1] + ("0" if state[-1] != "0" else "1"),
        "truncate": state[:40],
        "garbage": "x" * 64,
        "empty": "",
    }[mangle]
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), forged)
    assert response.status_code == 400 and refusal(response) == "invalid_state"


def test_expired_state_is_refused(browser, fake, tenant, zhangsan, monkeypatch):
    state = qr_state(browser, tenant)
    issued = int(state[:8], 16)
    monkeypatch.setattr(flows, "time", SimpleNamespace(time=lambda: issued + flows.STATE_MAX_AGE + 1))
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), state)
    assert response.status_code == 400 and refusal(response) == "invalid_state"


def test_a_state_is_consumed_exactly_once_under_concurrency(tenant):
    session = {}
    request = SimpleNamespace(session=session, get_host=lambda: "testserver", is_secure=lambda: False)
    state = flows.issue_state(request, tenant.pk, flows.FLOW_QR)
    results, barrier = [], threading.Barrier(8)

    def consume():
        barrier.wait()
        try:
            results.append(flows.consume_state(request, state))
        except refusals.InvalidState:
            results.append(None)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [ticket for ticket in results if ticket is not None]
    assert len(winners) == 1 and winners[0].tenant_id == tenant.pk


def test_callback_without_parameters_is_a_clear_page(browser, fake, tenant):
    response = browser.get(CALLBACK)
    assert response.status_code == 400 and refusal(response) == "invalid_state"
    state = qr_state(browser, tenant)
    response = browser.get(CALLBACK, {"state": state})
    assert response.status_code == 400 and refusal(response) == "missing_code"


# The code --------------------------------------------------------------------------------------------


def test_replayed_code_is_refused_locally(browser, fake, tenant, zhangsan):
    code = fake.issue_oauth_code(userid="zhangsan")
    assert callback(browser, code, qr_state(browser, tenant)).status_code == 302
    browser.logout()
    exchanges = fake.calls["auth/getuserinfo"]

    response = callback(browser, code, qr_state(browser, tenant))

    assert response.status_code == 400 and refusal(response) == "code_replayed"
    assert b"already used" in response.content
    assert fake.calls["auth/getuserinfo"] == exchanges  # refused without asking WeCom
    assert "_auth_user_id" not in browser.session


def test_code_refused_by_wecom_is_a_clear_page(browser, fake, tenant, zhangsan):
    code = fake.issue_oauth_code(userid="zhangsan")
    assert callback(browser, code, qr_state(browser, tenant)).status_code == 302
    browser.logout()
    # Another web process that never saw the code: only WeCom's own refusal (40029) stops it.
    from django.core.cache import cache

    cache.clear()
    response = callback(browser, code, qr_state(browser, tenant))
    assert response.status_code == 400 and refusal(response) == "code_invalid"
    assert "_auth_user_id" not in browser.session

    response = callback(browser, "not-a-code", qr_state(browser, tenant))
    assert response.status_code == 400 and refusal(response) == "code_invalid"


# Refusals --------------------------------------------------------------------------------------------


def test_member_not_bound_is_told_to_ask_for_a_sync(browser, fake, tenant):
    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))
    assert response.status_code == 403 and refusal(response) == "not_bound"
    assert b"sync the WeCom contacts" in response.content
    assert b"Acme Ltd" in response.content
    assert "_auth_user_id" not in browser.session
    assert not Binding.objects.exists()


def test_signup_creates_the_account_as_the_sync_would(browser, fake, tenant):
    tenant.wecom_config.allow_signup = True
    tenant.wecom_config.save()

    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant, next="/home/"))

    assert response.status_code == 302 and response["Location"] == "/home/"
    user = session_user(browser)
    assert user.username == "acmelisi"
    assert not user.has_usable_password()
    assert Membership.objects.get(user=user, tenant=tenant).status == Membership.Status.ACTIVE
    binding = Binding.objects.get(tenant=tenant, user=user)
    assert binding.wecom_user.userid == "lisi" and binding.wecom_user.name == "李四"
    actions = set(AuditLog.objects.filter(tenant=tenant, target_user=user).values_list("action", flat=True))
    assert {AuditLog.Action.CREATE_ACCOUNT, AuditLog.Action.BIND} <= actions

    # Signing in again uses the same account.
    browser.logout()
    assert callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant)).status_code == 302
    assert session_user(browser) == user


def test_signup_never_binds_an_existing_user_of_the_same_name(browser, fake, tenant):
    """Issue 16: the account made at sign-up is new; an existing account of its name is left alone."""
    tenant.wecom_config.allow_signup = True
    tenant.wecom_config.save()
    existing = make_user("acmelisi")

    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))

    assert response.status_code == 302
    user = session_user(browser)
    assert user.pk != existing.pk and user.username == "acmelisi-2"
    assert Binding.objects.get(tenant=tenant, wecom_user__userid="lisi").user == user
    assert not Membership.objects.filter(user=existing).exists()
    assert existing.check_password("pw-123456!")  # the existing account is left as it was


def test_pending_membership_is_refused(browser, fake, tenant):
    bind(tenant, make_user("li.si"), "lisi", membership=Membership.Status.PENDING)
    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))
    assert response.status_code == 403 and refusal(response) == "pending"
    assert b"waiting for approval" in response.content


@pytest.mark.parametrize("how", ["user_inactive", "binding_inactive", "membership_inactive", "membership_rejected"])
def test_deactivated_account_is_refused(browser, fake, tenant, how):
    user = make_user("li.si", is_active=how != "user_inactive")
    membership = {
        "membership_inactive": Membership.Status.INACTIVE,
        "membership_rejected": Membership.Status.REJECTED,
    }.get(how, Membership.Status.ACTIVE)
    bind(tenant, user, "lisi", membership=membership, active=how != "binding_inactive")

    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))

    assert response.status_code == 403 and refusal(response) == "deactivated"
    assert b"deactivated" in response.content
    assert "_auth_user_id" not in browser.session


def test_bound_user_without_membership_is_refused(browser, fake, tenant):
    bind(tenant, make_user("li.si"), "lisi", membership=None)
    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))
    assert response.status_code == 403 and refusal(response) == "no_membership"


def test_a_sign_in_asks_to_join_through_a_wecom_approval_when_the_tenant_decides_so(browser, fake, tenant):
    from wecom_integration.models import Approval, MembershipApprovalSetting
    from wecom_integration.testing.fake.approval import JOIN_TEMPLATE_ID

    MembershipApprovalSetting.objects.create(tenant=tenant, template_id=JOIN_TEMPLATE_ID, approvers="zhangsan")
    user = make_user("li.si")
    bind(tenant, user, "lisi", membership=None)
    with TestCase.captureOnCommitCallbacks(execute=True):  # the approval is submitted once the request commits
        response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))
    assert response.status_code == 403 and refusal(response) == "pending"
    assert Membership.objects.get(user=user, tenant=tenant).status == Membership.Status.PENDING
    approval = Approval.objects.get(tenant=tenant, purpose=Approval.Purpose.MEMBERSHIP)
    assert approval.subject_user == user and approval.applicant == "lisi"
    assert fake.approvals[approval.sp_no]["sp_record"][0]["details"][0]["approver"]["userid"] == "zhangsan"


def test_non_member_with_openid_only_is_refused(browser, fake, tenant):
    response = callback(browser, fake.issue_oauth_code(openid="oAbCdEfG123"), qr_state(browser, tenant))
    assert response.status_code == 403 and refusal(response) == "not_member"
    assert b"not a member" in response.content


def test_untrusted_ip_shows_what_the_admin_must_fix(browser, fake, tenant, zhangsan):
    fake.set_faults(error_rate=1.0, errcodes=(60020,), paths=["auth/getuserinfo"])
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, tenant))
    assert response.status_code == 502 and refusal(response) == "wecom_error"
    admin_message = re.search(rb'id="wecom-admin-message">(.*?)</p>', response.content, re.S).group(1).decode()
    assert "127.0.0.1" in admin_message and "企业可信IP" in admin_message
    assert "_auth_user_id" not in browser.session


def test_wrong_secret_shows_what_the_admin_must_fix(browser, fake, tenant, zhangsan):
    config = tenant.wecom_config
    config.secret = "not-the-secret"
    config.save()
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, tenant))
    assert response.status_code == 502 and refusal(response) == "wecom_error"
    assert b"app Secret" in response.content


def test_wecom_not_answering_is_a_clear_page(browser, fake, tenant, zhangsan, settings):
    state = qr_state(browser, tenant)
    code = fake.issue_oauth_code(userid="zhangsan")
    settings.WECOM = {**settings.WECOM, "BUSY_RETRIES": 0, "BUSY_BACKOFF": 0}
    fake.stop()
    response = callback(browser, code, state)
    assert response.status_code == 502 and refusal(response) == "wecom_error"
    assert b"did not answer" in response.content


def test_disabled_configuration_is_refused(browser, fake, tenant, zhangsan):
    state = qr_state(browser, tenant)
    config = tenant.wecom_config
    config.enabled = False
    config.save()

    response = browser.get(f"/wecom/login/{tenant.pk}/")
    assert response.status_code == 404 and refusal(response) == "disabled"
    response = browser.get(f"/wecom/oauth/{tenant.pk}/")
    assert response.status_code == 404 and refusal(response) == "disabled"
    # A sign-in already under way when the admin turned it off does not complete either.
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), state)
    assert response.status_code == 404 and refusal(response) == "disabled"
    assert "_auth_user_id" not in browser.session


def test_tenant_without_configuration_is_refused(browser):
    other = make_tenant("noconf")
    response = browser.get(f"/wecom/login/{other.pk}/")
    assert response.status_code == 404 and refusal(response) == "disabled"
    assert browser.get("/wecom/login/999999/").status_code == 404
    assert browser.get("/wecom/oauth/99999999999999999999999/").status_code == 404
    assert browser.get("/wecom/login/", {"tenant": "99999999999999999999999"}).status_code == 404
    assert browser.get("/accounts/login/", {"tenant": "99999999999999999999999"}).status_code == 200


# Tenant isolation ------------------------------------------------------------------------------------


def test_codes_and_bindings_do_not_cross_tenants(browser, fake, tenant, zhangsan, make_fake_wecom, use_fake):
    other_fake = make_fake_wecom(users=5, departments=2)
    other_fake.add_user("zhangsan", "张三")
    other = make_tenant("globex", "Globex")
    config_from_fake(other, other_fake)

    # A code of corp B, brought back with a state of tenant A, is exchanged at corp A, which refuses it.
    response = callback(browser, other_fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, tenant))
    assert response.status_code == 400 and refusal(response) == "code_invalid"
    assert "_auth_user_id" not in browser.session

    use_fake(other_fake)
    # A code of corp A at tenant B: likewise.
    response = callback(browser, fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, other))
    assert response.status_code == 400 and refusal(response) == "code_invalid"
    # The same userid in corp B is a different person: zhang.san is bound in A only.
    response = callback(browser, other_fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, other))
    assert response.status_code == 403 and refusal(response) == "not_bound"
    assert "_auth_user_id" not in browser.session


# Languages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_refusal_pages_speak_the_visitors_language(fake, tenant, language):
    browser = Client(headers={"accept-language": language})
    response = callback(browser, fake.issue_oauth_code(userid="lisi"), qr_state(browser, tenant))
    assert response.status_code == 403
    html = response.content.decode()
    assert f'<html lang="{language}">' in html
    with translation.override(language):
        expected = str(refusals.NotBound(tenant=tenant).message)
        title = str(refusals.NotBound.title)
    assert expected in html.replace("&#x27;", "'") and title in html
    if language == "en":
        assert "Ask your administrator to sync the WeCom contacts" in html


# The login page --------------------------------------------------------------------------------------


def test_login_page_keeps_password_login_and_offers_the_tenants_wecom_button(browser, fake, tenant):
    make_user("alice", password="correct horse 1")
    response = browser.get("/accounts/login/", {"tenant": "acme", "next": "/orders/"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="password"' in html
    assert f'href="/wecom/login/{tenant.pk}/?next=%2Forders%2F"' in html
    assert "Sign in to Acme Ltd with WeCom" in html

    credentials = {"username": "alice", "password": "correct horse 1", "next": "/orders/"}
    response = browser.post("/accounts/login/", credentials)
    assert response.status_code == 302 and response["Location"] == "/orders/"
    assert session_user(browser).username == "alice"


def test_login_page_lets_the_visitor_choose_a_tenant(browser, fake, tenant, zhangsan):
    response = browser.get("/accounts/login/", {"next": "/orders/"})
    html = response.content.decode()
    assert f'<option value="{tenant.pk}">Acme Ltd</option>' in html
    response = browser.get("/wecom/login/", {"tenant": tenant.pk, "next": "/orders/"})
    assert response.status_code == 302 and response["Location"] == f"/wecom/login/{tenant.pk}/?next=%2Forders%2F"
    response = browser.get("/wecom/login/", {"tenant": tenant.pk, "next": "//evil.com"})
    assert response["Location"] == f"/wecom/login/{tenant.pk}/"
    response = browser.get("/wecom/login/", {"tenant": "nope"})
    assert response.status_code == 404 and refusal(response) == "disabled"


# Two-step verification -------------------------------------------------------------------------------


@pytest.fixture
def two_step(tenant):
    config = tenant.wecom_config
    config.two_step_verification = True
    config.save()
    return tenant


def test_two_step_verification_signs_in_then_calls_tfa_succ(browser, fake, two_step, zhangsan):
    tenant = two_step
    response = browser.get(f"/wecom/verify/{tenant.pk}/", {"code": fake.issue_tfa_code("zhangsan")})
    assert response.status_code == 302
    verify_page = response["Location"]
    assert verify_page.startswith(f"/wecom/verify/{tenant.pk}/?v=") and "code" not in verify_page

    # Not signed in here: sent to sign in, coming back to the verification page.
    response = browser.get(verify_page)
    assert response.status_code == 302
    login_url = response["Location"]
    assert urlsplit(login_url).path == "/accounts/login/"
    assert parse_qs(urlsplit(login_url).query)["next"] == [verify_page]
    assert fake.authsucc_users == set()

    response = browser.post(login_url, {"username": "zhang.san", "password": "pw-123456!", "next": verify_page})
    assert response.status_code == 302 and response["Location"] == verify_page

    response = browser.get(verify_page)
    assert response.status_code == 200
    assert b'id="wecom-verified"' in response.content
    assert fake.authsucc_users == {"zhangsan"}


def test_two_step_verification_refuses_another_account(browser, fake, two_step, zhangsan):
    tenant = two_step
    browser.force_login(make_user("someone.else"), backend="django.contrib.auth.backends.ModelBackend")
    response = browser.get(f"/wecom/verify/{tenant.pk}/", {"code": fake.issue_tfa_code("zhangsan")})
    response = browser.get(response["Location"])
    assert response.status_code == 403 and refusal(response) == "wrong_account"
    assert b"/accounts/login/?next=" in response.content
    assert fake.authsucc_users == set()


def test_two_step_verification_when_already_signed_in_with_wecom(browser, fake, two_step, zhangsan):
    tenant = two_step
    assert callback(browser, fake.issue_oauth_code(userid="zhangsan"), qr_state(browser, tenant)).status_code == 302
    code = fake.issue_tfa_code("zhangsan")
    response = browser.get(f"/wecom/verify/{tenant.pk}/", {"code": code}, follow=True)
    assert response.status_code == 200 and b'id="wecom-verified"' in response.content
    assert fake.authsucc_users == {"zhangsan"}


def test_two_step_verification_refusals(browser, fake, tenant, zhangsan):
    path = f"/wecom/verify/{tenant.pk}/"
    response = browser.get(path, {"code": fake.issue_tfa_code("zhangsan")})
    assert response.status_code == 404 and refusal(response) == "verification_disabled"

    config = tenant.wecom_config
    config.two_step_verification = True
    config.save()
    code = fake.issue_tfa_code("lisi")
    verify_page = browser.get(path, {"code": code})["Location"]
    response = browser.get(verify_page)
    assert response.status_code == 403 and refusal(response) == "not_bound"
    assert refusal(browser.get(path, {"code": code})) == "code_replayed"
    assert refusal(browser.get(path)) == "missing_code"
    assert refusal(browser.get(path, {"v": "forged"})) == "invalid_state"
    # A token for tenant A does not verify at tenant B.
    other = make_tenant("globex")
    make_config(other, two_step_verification=True)
    token = parse_qs(urlsplit(verify_page).query)["v"][0]
    response = browser.get(f"/wecom/verify/{other.pk}/", {"v": token})
    assert response.status_code == 400 and refusal(response) == "invalid_state"
    assert fake.authsucc_users == set()


def test_two_step_verification_through_the_app_oauth_page(browser, fake, two_step, zhangsan):
    """Docs 99499/99500: the app exchanges the page's code when the page is its own OAuth link and the
    member is in its visible range."""
    config = two_step.wecom_config
    config.two_step_credential = "app"
    config.save()
    fake.two_step_page = "app_oauth"
    fake.org.set_visible_range(users=["zhangsan"])
    browser.force_login(zhangsan, backend="django.contrib.auth.backends.ModelBackend")
    response = browser.get(f"/wecom/verify/{two_step.pk}/", {"code": fake.issue_tfa_code("zhangsan")}, follow=True)
    assert response.status_code == 200 and b'id="wecom-verified"' in response.content
    assert fake.authsucc_users == {"zhangsan"}
    assert fake.calls["user/tfa_succ"] == 1 and fake.gettoken_calls["contacts"] == 0


def test_the_configuration_page_shows_the_verification_page_to_set(admin_client, fake, two_step):
    config = two_step.wecom_config
    page = admin_client.get(reverse("admin:wecom_integration_wecomconfig_change", args=[config.pk]))
    urls = page.context["verification_urls"]
    assert urls["setting"] == urls["page"] and urls["page"].endswith(f"/wecom/verify/{two_step.pk}/")
    config.two_step_credential = "app"
    config.save()
    page = admin_client.get(reverse("admin:wecom_integration_wecomconfig_change", args=[config.pk]))
    urls = page.context["verification_urls"]
    assert urls["setting"] == urls["oauth"] and "agentid=" in urls["oauth"]
    assert quote(urls["page"], safe="") in urls["oauth"]
    assert urls["oauth"].encode() in page.content.replace(b"&amp;", b"&")


def test_two_step_verification_refused_through_the_wrong_exchange(browser, fake, two_step, zhangsan):
    """The app cannot exchange a code of WeCom's own verification page, nor one of a member outside its
    visible range; nothing is confirmed and the admin is told what to change."""
    config = two_step.wecom_config
    config.two_step_credential = "app"
    config.save()
    path = f"/wecom/verify/{two_step.pk}/"
    response = browser.get(path, {"code": fake.issue_tfa_code("zhangsan")})
    assert refusal(response) == "code_invalid"
    fake.two_step_page = "app_oauth"
    fake.org.set_visible_range(users=["lisi"])
    response = browser.get(path, {"code": fake.issue_tfa_code("zhangsan")})
    assert refusal(response) == "wecom_error"
    assert fake.authsucc_users == set()


# The authentication backend --------------------------------------------------------------------------


def test_backend_through_django_authenticate(fake, tenant, zhangsan):
    request = RequestFactory().get("/my/own/callback/")
    assert authenticate(request, wecom_code=fake.issue_oauth_code(userid="zhangsan"), tenant_id=tenant.pk) == zhangsan

    request = RequestFactory().get("/my/own/callback/")
    assert authenticate(request, wecom_code=fake.issue_oauth_code(userid="lisi"), tenant_id=tenant.pk) is None
    assert request.wecom_login_error.reason == "not_bound"

    code = fake.issue_oauth_code(userid="zhangsan")
    assert authenticate(None, wecom_code=code, tenant_id=tenant.pk) == zhangsan
    request = RequestFactory().get("/my/own/callback/")
    assert authenticate(request, wecom_code=code, tenant_id=tenant.pk) is None
    assert request.wecom_login_error.reason == "code_replayed"

    # Password credentials never reach it; the model backend still answers them.
    assert authenticate(None, username="zhang.san", password="pw-123456!") == zhangsan
    assert authenticate(None, wecom_code="", tenant_id=tenant.pk) is None

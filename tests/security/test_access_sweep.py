"""Who reaches what, swept from the URL resolver and the admin registry (issue 16, item 5).

Two tenants, A and B, are configured against the fake WeCom, each with a tenant admin, an ordinary member
(a staff account, so the admin's own checks are what refuses it) and API tokens. Every URL of the project
(``get_resolver()`` walked recursively: the admin of every registered model and its custom pages, the
callbacks, sign-in pages, health probes and the API) is filled with tenant A's objects and called

- anonymously,
- as A's ordinary member (session and token, ``X-Tenant-Id`` A),
- as B's admin (session and token, ``X-Tenant-Id`` A: the other tenant's admin reaching for A),

and each answer's status must be in the set written beside the URL's name in EXPECTED. A URL (or a
method of it) without an entry fails the test, so a new URL must be classified here; an entry without a
URL fails too. Answers to the anonymous caller and to B's admin must never show A's data.
"""

import pytest
from django.contrib import admin
from django.test import Client, override_settings
from rest_framework.authtoken.models import Token

from tenants.models import Membership
from tests.factories import make_tenant, make_tenant_admin
from tests.security.test_isolation_sweep import _global_objects, fill, fillings, snapshot, view_class, walk
from tests.tenant_objects import make_tenant_objects
from wecom_integration import models as m

pytestmark = pytest.mark.django_db

# A's objects carry this in their names: an answer showing one of them to a stranger is a leak.
MARKER = "zq7tenanta"
ROLES = ("anonymous", "member", "other_admin")

# Outcomes, per role (anonymous, A's ordinary member, B's admin) -------------------------------------------
OK = {200}
LOGIN = {302}  # the admin's redirect to its sign-in page
DENIED = {403}
GONE = {404}
NOT_ALLOWED = {405}
UNAUTHENTICATED = {401}
BAD_CALLBACK = {400}  # no signature: refused before anything is read

ADMIN_PAGE = (LOGIN, DENIED, OK)  # a list or add page: B's admin sees B's own rows only (checked: no marker)
ADMIN_OBJECT = (LOGIN, DENIED, DENIED)  # a page of one of A's objects
ADMIN_SUPERUSER_ONLY = (LOGIN, DENIED, DENIED)  # e.g. adding what a tenant admin may not create
ADMIN_OWN = (LOGIN, OK, OK)  # the caller's own password, the admin index
API_MEMBER = (UNAUTHENTICATED, OK, DENIED)  # any active member of A
API_ADMIN = (UNAUTHENTICATED, DENIED, DENIED)  # A's admins only
API_OBJECT_ADMIN = (UNAUTHENTICATED, DENIED, DENIED)
CALLBACK = (BAD_CALLBACK, BAD_CALLBACK, BAD_CALLBACK)  # the signature decides, not the session
PUBLIC_PAGE = (OK, OK, OK)
# What a tenant publishes on purpose: its answer is A's data by design (the file WeCom fetches to prove the
# domain), so the leak check does not apply to it.
PUBLISHED = {"GET wecom-domain-file"}


def model_urls(app_model, *, changelist=ADMIN_PAGE, add=ADMIN_PAGE, delete=ADMIN_OBJECT, extra=None):
    """The admin's five standard URLs of a model (list, add, change, delete, history), with ``extra``."""
    name = f"admin:{app_model}"
    rows = {
        f"GET {name}_changelist": changelist,
        f"GET {name}_add": add,
        f"GET {name}_change": ADMIN_OBJECT,
        f"GET {name}_delete": delete,
        f"GET {name}_history": ADMIN_OBJECT,
    }
    rows.update(extra or {})
    return rows


EXPECTED = {
    # Health: probes and the scrape answer anyone on loopback (metrics: its own token or allowed IPs).
    "GET healthz": PUBLIC_PAGE,
    "GET readyz": PUBLIC_PAGE,
    "GET metrics": PUBLIC_PAGE,
    "GET set_language": ({302}, {302}, {302}),
    # Callbacks: anonymous by nature, the tenant's signature decides.
    "GET wecom_integration:callback-app": CALLBACK,
    "POST wecom_integration:callback-app": CALLBACK,
    "GET wecom_integration:callback-contacts": CALLBACK,
    "POST wecom_integration:callback-contacts": CALLBACK,
    "GET wecom_integration:callback-customers": CALLBACK,
    "POST wecom_integration:callback-customers": CALLBACK,
    # Signing in.
    "GET wecom_integration:login": PUBLIC_PAGE,
    "GET wecom_integration:logout": (NOT_ALLOWED, NOT_ALLOWED, NOT_ALLOWED),
    "GET wecom_integration:login-choose": (GONE, GONE, GONE),  # no ?tenant=: no such sign-in
    "GET wecom_integration:login-qr": ({302}, {302}, {302}),
    "GET wecom_integration:oauth-start": ({302}, {302}, {302}),
    "GET wecom_integration:oauth-callback": ({400}, {400}, {400}),
    "GET wecom_integration:verify": ({400}, {400}, {400}),  # WeCom's code is missing
    # The API, X-Tenant-Id A.
    "GET wecom_integration:api-tenant": API_MEMBER,
    "GET wecom_integration:api-wecom-departments": API_MEMBER,
    "GET wecom_integration:api-wecom-users": API_MEMBER,
    "GET wecom_integration:api-wecom-sync": API_MEMBER,
    "POST wecom_integration:api-wecom-sync": API_ADMIN,
    "GET wecom_integration:api-wecom-sync-detail": API_MEMBER,
    "POST wecom_integration:api-wecom-sync-confirm": API_OBJECT_ADMIN,
    "POST wecom_integration:send-message-test": API_ADMIN,
    "GET wecom_integration:api-messages": API_ADMIN,
    "POST wecom_integration:api-messages": API_ADMIN,
    "GET wecom_integration:api-message": API_OBJECT_ADMIN,
    "GET wecom_integration:api-approvals": API_ADMIN,
    "POST wecom_integration:api-approvals": API_ADMIN,
    "GET wecom_integration:api-approval": API_OBJECT_ADMIN,
    # A member reaches it; without ?url= there is no page to sign (400).
    "GET wecom_integration:api-jssdk": (UNAUTHENTICATED, {400}, DENIED),
    # The chat sidebar: signed out, WeCom's in-app sign-in; members of A see it; B's admin does not.
    "GET wecom_integration:sidebar": ({302}, OK, DENIED),
    "GET wecom_integration:sidebar-customer": (DENIED, OK, DENIED),
    "GET wecom_integration:sidebar-group": (DENIED, OK, DENIED),
    "GET wecom_integration:api-schema": PUBLIC_PAGE,
    "GET wecom_integration:api-docs": PUBLIC_PAGE,
    # The admin site.
    "GET admin:index": ADMIN_OWN,
    "GET admin:login": ({200}, {302}, {302}),
    "GET admin:logout": (LOGIN, NOT_ALLOWED, NOT_ALLOWED),
    "GET admin:password_change": ADMIN_OWN,
    "GET admin:password_change_done": ADMIN_OWN,
    "GET admin:jsi18n": ADMIN_OWN,
    "GET admin:autocomplete": (LOGIN, DENIED, DENIED),
    "GET admin:view_on_site": (LOGIN, GONE, GONE),
    "GET admin:app_list": (LOGIN, GONE, {200, 404}),  # 404: an app none of whose models B's admin sees
    "GET admin/(?P<url>.*)$": (LOGIN, GONE, GONE),
    **model_urls("auth_user", changelist=ADMIN_SUPERUSER_ONLY, add=ADMIN_SUPERUSER_ONLY),
    "GET admin/auth/user/<path:object_id>/": (LOGIN, {302}, {302}),
    "GET admin:auth_user_password_change": ADMIN_OBJECT,
    **model_urls("auth_group", changelist=ADMIN_SUPERUSER_ONLY, add=ADMIN_SUPERUSER_ONLY),
    "GET admin/auth/group/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("authtoken_tokenproxy", changelist=ADMIN_SUPERUSER_ONLY, add=ADMIN_SUPERUSER_ONLY),
    "GET admin/authtoken/tokenproxy/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "tenants_tenant", add=ADMIN_SUPERUSER_ONLY, extra={"GET admin:tenants_tenant_dashboard": ADMIN_OBJECT}
    ),
    "GET admin/tenants/tenant/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("tenants_membership"),
    "GET admin/tenants/membership/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_wecomconfig",
        extra={"GET admin:wecom_integration_wecomconfig_test_connection": ADMIN_OBJECT},
    ),
    "GET admin/wecom_integration/wecomconfig/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_callbackevent",
        add=ADMIN_SUPERUSER_ONLY,
        extra={"GET admin:wecom_integration_callbackevent_retry": ADMIN_OBJECT},
    ),
    "GET admin/wecom_integration/callbackevent/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_inboxmessage",
        add=ADMIN_SUPERUSER_ONLY,
        extra={
            "GET admin:wecom_integration_inboxmessage_conversations": ADMIN_PAGE,
            "GET admin:wecom_integration_inboxmessage_conversation": ADMIN_OBJECT,
        },
    ),
    "GET admin/wecom_integration/inboxmessage/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_externalcontact",
        add=ADMIN_SUPERUSER_ONLY,
        extra={"GET admin:wecom_integration_externalcontact_tags": ADMIN_OBJECT},
    ),
    "GET admin/wecom_integration/externalcontact/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_department",
        add=ADMIN_SUPERUSER_ONLY,
        extra={"GET admin:wecom_integration_department_org_chart": ADMIN_PAGE},
    ),
    "GET admin/wecom_integration/department/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_wecomuser", add=ADMIN_SUPERUSER_ONLY),
    "GET admin/wecom_integration/wecomuser/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_binding"),
    "GET admin/wecom_integration/binding/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_auditlog", add=ADMIN_SUPERUSER_ONLY),
    "GET admin/wecom_integration/auditlog/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_syncrun",
        add=ADMIN_SUPERUSER_ONLY,
        extra={
            # POST only; the method is checked first (the isolation sweep POSTs to it).
            "GET admin:wecom_integration_syncrun_start": (LOGIN, NOT_ALLOWED, NOT_ALLOWED),
            "GET admin:wecom_integration_syncrun_cancel": (LOGIN, NOT_ALLOWED, NOT_ALLOWED),
            "GET admin:wecom_integration_syncrun_review": ADMIN_OBJECT,
            "GET admin:wecom_integration_syncrun_review_search": ADMIN_OBJECT,
            "GET admin:wecom_integration_syncrun_progress": ADMIN_OBJECT,
            "GET admin:wecom_integration_syncrun_progress_json": ADMIN_OBJECT,
        },
    ),
    "GET admin/wecom_integration/syncrun/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_messagelog",
        add=ADMIN_SUPERUSER_ONLY,
        extra={
            "GET admin:wecom_integration_messagelog_send_test": ADMIN_OBJECT,  # A's configuration
            "GET admin:wecom_integration_messagelog_menu": ADMIN_OBJECT,
            "GET admin:wecom_integration_messagelog_inbox_reply": ADMIN_OBJECT,
        },
    ),
    "GET admin/wecom_integration/messagelog/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_cardclick", add=ADMIN_SUPERUSER_ONLY),
    "GET admin/wecom_integration/cardclick/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_domainverificationfile"),
    "GET admin/wecom_integration/domainverificationfile/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls(
        "wecom_integration_approval",
        add=ADMIN_SUPERUSER_ONLY,
        extra={"GET admin:wecom_integration_approval_submit": ADMIN_PAGE},
    ),
    "GET admin/wecom_integration/approval/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_customergroup", add=ADMIN_SUPERUSER_ONLY),
    "GET admin/wecom_integration/customergroup/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_contacttag", extra={"GET admin:wecom_integration_contacttag_sync": ADMIN_PAGE}),
    "GET admin/wecom_integration/contacttag/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_customertag", extra={"GET admin:wecom_integration_customertag_sync": ADMIN_PAGE}),
    "GET admin/wecom_integration/customertag/<path:object_id>/": (LOGIN, {302}, {302}),
    **model_urls("wecom_integration_membershipapprovalsetting"),
    "GET admin/wecom_integration/membershipapprovalsetting/<path:object_id>/": (LOGIN, {302}, {302}),
    # WeCom fetches the trusted-domain file anonymously from the site's root: public by design.
    "GET wecom-domain-file": PUBLIC_PAGE,
}


def methods_of(label, route, pattern):
    """The methods the sweep calls: every method of an API view, GET and POST of a callback, GET else."""
    if label.startswith("wecom_integration:callback-"):
        return ["GET", "POST"]
    cls = view_class(pattern)
    if route.startswith(("api/", "sys/")) and cls is not None:
        return [method.upper() for method in ("get", "post", "put", "patch", "delete") if hasattr(cls, method)]
    return ["GET"]


@pytest.fixture
def world(make_fake_wecom):
    fake_a = make_fake_wecom(users=6, departments=2, seed=31)
    fake_b = make_fake_wecom(users=6, departments=2, seed=32)
    tenant_a, tenant_b = make_tenant("accessa"), make_tenant("accessb")
    objects_a = make_tenant_objects(tenant_a, MARKER)
    make_tenant_objects(tenant_b, "accessb")
    extra_a, _key = _global_objects(objects_a, MARKER)
    objects_a.update(extra_a)
    for tenant, fake in ((tenant_a, fake_a), (tenant_b, fake_b)):
        m.WeComConfig.objects.filter(tenant=tenant).update(corp_id=fake.corp_id, agent_id=fake.agent_id)
        config = m.WeComConfig.objects.get(tenant=tenant)
        config.secret, config.contact_secret, config.customer_secret = (
            fake.secret,
            fake.contact_secret,
            fake.customer_secret,
        )
        config.save()
    member_a = make_tenant_admin("access-member-a", tenant_a)  # staff, then demoted to an ordinary member
    Membership.objects.filter(user=member_a, tenant=tenant_a).update(role=Membership.Role.MEMBER)
    admin_b = make_tenant_admin("access-admin-b", tenant_b)
    callers = {"anonymous": Client()}
    for role, user in (("member", member_a), ("other_admin", admin_b)):
        client = Client(HTTP_X_ACCESS_TOKEN=Token.objects.create(user=user).key)
        client.force_login(user)
        callers[role] = client
    with override_settings(WECOM={"API_BASE": fake_a.api_base, "BUSY_BACKOFF": 0.001, "BUSY_RETRIES": 1}):
        yield tenant_a, objects_a, callers


CATCH_ALL = "admin/(?P<url>.*)$"


def swept_urls(objects_a):
    """(key, label, url) for every URL and method, arguments filled with A's objects."""
    for label, route, pattern in walk():
        for method in methods_of(label, route, pattern):
            if label == CATCH_ALL:
                # A path only the admin's catch-all serves (a real object's path has its own pattern).
                yield f"{method} {label}", label, "/admin/no-such-page/"
                continue
            for kwargs in fillings(route, pattern, objects_a):
                yield f"{method} {label}", label, fill(route, kwargs)


def test_every_url_has_an_expectation_and_every_expectation_a_url(world):
    _tenant, objects_a, _callers = world
    keys = {key for key, _label, _url in swept_urls(objects_a)}
    missing = sorted(keys - set(EXPECTED))
    stale = sorted(set(EXPECTED) - keys)
    assert not missing, "classify these URLs in EXPECTED:\n" + "\n".join(missing)
    assert not stale, "EXPECTED names URLs that no longer exist:\n" + "\n".join(stale)
    # Every model of the admin registry is swept.
    registered = {
        f"GET admin:{model._meta.app_label}_{model._meta.model_name}_change" for model in admin.site._registry
    }
    assert registered <= keys


def test_each_role_gets_exactly_the_expected_answer(world):
    tenant_a, objects_a, callers = world
    before = snapshot({model: obj for model, obj in objects_a.items()})
    wrong, leaks, swept = [], [], 0
    for key, _label, url in swept_urls(objects_a):
        method = key.split(" ", 1)[0].lower()
        for role, expected in zip(ROLES, EXPECTED[key], strict=True):
            client = callers[role]
            response = getattr(client, method)(url, HTTP_X_TENANT_ID=str(tenant_a.pk), HTTP_ACCEPT_LANGUAGE="en")
            swept += 1
            if response.status_code not in expected:
                wrong.append(f"{key} {url} as {role}: {response.status_code}, expected {sorted(expected)}")
            if role != "member" and response.status_code == 200 and key not in PUBLISHED:
                body = b"".join(response.streaming_content) if response.streaming else response.content
                if MARKER.encode() in body.lower():
                    leaks.append(f"{key} {url} as {role} shows tenant A's data")
    assert swept > 300
    assert not wrong, "\n".join(wrong)
    assert not leaks, "\n".join(leaks)
    assert snapshot(objects_a) == before, "a stranger changed an object of tenant A"

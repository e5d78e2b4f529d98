"""Tenant isolation, swept from the URL configuration: every admin URL and every API endpoint.

The sweep walks ``get_resolver().url_patterns`` and fills each pattern's arguments with tenant B's
objects (object ids by the model the admin or the API view serves, run ids, config ids, tenant ids, WeCom
userids). Tenant A's admin, in the admin and with an API token, must then get 403/404 (or a redirect
that leads to no data of B), never a page or an answer carrying B's data, and must change nothing of B:
every object of B is compared before and after. List pages and list endpoints answer A's data only; any
API request naming tenant B in X-Tenant-Id is refused with 403.

A new URL is covered without touching this file, and the sweep fails on one it cannot fill (an argument
name it does not know, a view it cannot classify): teach it the argument, or, for a deliberately
public URL, add it to PUBLIC with the reason.
"""

import re

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token, TokenProxy
from rest_framework.views import APIView

from tenants.models import Tenant
from tests.factories import make_tenant, make_tenant_admin
from tests.tenant_objects import make_tenant_objects
from wecom_integration import models as m

pytestmark = pytest.mark.django_db

# B's objects all carry this in their names, so any answer showing one of them is caught by a search.
MARKER = "zb9qtenantb"

# Public by design: what WeCom, a signing-in user, a probe or the docs reach without a tenant admin's
# session. Keyed by URL name (or route, for unnamed patterns), each with the reason it is not swept.
PUBLIC = {
    "wecom_integration:callback-app": "WeCom posts here, authenticated by the tenant's own signature",
    "wecom_integration:callback-contacts": "WeCom posts here, authenticated by the tenant's own signature",
    "wecom_integration:callback-customers": "WeCom posts here, authenticated by the tenant's own signature",
    "wecom_integration:login": "the sign-in page",
    "wecom_integration:logout": "signing out",
    "wecom_integration:login-choose": "choosing the company to sign in to",
    "wecom_integration:login-qr": "starting WeCom's QR sign-in for a tenant",
    "wecom_integration:oauth-start": "starting WeCom's in-app sign-in for a tenant",
    "wecom_integration:oauth-callback": "WeCom's sign-in redirect",
    "wecom_integration:verify": "the two-step verification page WeCom sends members to",
    "wecom_integration:api-schema": "the OpenAPI schema",
    "wecom_integration:api-docs": "the API docs page",
    # Pages inside the WeCom client for signed-in members of the tenant in the path: their own checks, swept
    # by test_access_sweep (roles) and tests/jssdk/test_sidebar_access.py (another tenant's customer).
    "wecom_integration:sidebar": "the chat sidebar page (members of its tenant; signed out: WeCom's sign-in)",
    "wecom_integration:sidebar-customer": "the chat sidebar's customer panel (members of its tenant)",
    "wecom_integration:sidebar-group": "the chat sidebar's group panel (members of its tenant)",
    "wecom-domain-file": "the trusted-domain file WeCom fetches from the site's root (its content is public)",
    "set_language": "Django's language switch",
    "healthz": "liveness probe",
    "readyz": "readiness probe",
    "metrics": "Prometheus scrape, its own token",
    "wecom_integration:healthz": "liveness probe",
    "wecom_integration:readyz": "readiness probe",
    "wecom_integration:metrics": "Prometheus scrape, its own token",
    "admin:login": "the admin's sign-in",
    "admin:logout": "signing out",
    "admin:password_change": "one's own password",
    "admin:password_change_done": "one's own password",
    "admin:jsi18n": "static translations",
}

# Which of B's objects an argument names, when the argument's name says it whatever the view.
BY_ARGUMENT = {
    "run_id": m.SyncRun,
    "contact_id": m.ExternalContact,
    "follow_id": m.FollowUser,
    "config_id": m.WeComConfig,
    "tenant_id": Tenant,
}
OBJECT_ARGUMENTS = ("object_id", "pk", "id")
# GET endpoints without an object that are not lists: what they answer with no query, holding nothing of
# any tenant. The JS-SDK configuration needs ?url= (the page to sign; tests/jssdk covers it with one).
NOT_LISTS = {"wecom_integration:api-jssdk": 400}
_ADMIN_MODEL_ROUTE = re.compile(r"^admin/(\w+)/(\w+)/")


def walk(patterns=None, prefix="", namespace=""):
    """(label, route, pattern) of every URL, resolvers flattened."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace and (f"{namespace}:{pattern.namespace}" if namespace else pattern.namespace)
            yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner or namespace)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            label = f"{namespace}:{pattern.name}" if namespace and pattern.name else (pattern.name or route)
            yield label, route, pattern


def view_class(pattern):
    return getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)


def classify(label, route, pattern):
    """"public", "admin" or "api"; None for a URL the sweep does not know."""
    if label in PUBLIC:
        return "public"
    if label.startswith("admin:") or route.startswith("admin/"):
        return "admin"
    cls = view_class(pattern)
    if cls is not None and issubclass(cls, APIView):
        return "api"
    return None


def arguments(route, pattern):
    """The argument names of a pattern, path converters and regex groups alike."""
    names = re.findall(r"<(?:\w+:)?(\w+)>", route)
    names += re.findall(r"\(\?P<(\w+)>", route)
    return list(dict.fromkeys(names))


def model_of(route, pattern):
    """The model whose objects an object-id argument names: the admin's, or the API view's."""
    model_admin = getattr(pattern.callback, "model_admin", None)
    if model_admin is not None:
        return model_admin.model
    found = _ADMIN_MODEL_ROUTE.match(route)
    if found:
        try:
            return apps.get_model(found[1], found[2])
        except LookupError:
            pass
    cls = view_class(pattern)
    if cls is not None:
        queryset = getattr(cls, "queryset", None)
        if queryset is not None:
            return queryset.model
        serializer = getattr(cls, "serializer_class", None)
        meta = getattr(serializer, "Meta", None)
        if getattr(meta, "model", None) is not None:
            return meta.model
    return None


def fillings(route, pattern, objects_b):
    """Every way to fill the pattern's arguments with B's objects: a list of kwargs dicts. Raises
    LookupError naming the argument it cannot fill."""
    names = arguments(route, pattern)
    if not names:
        return [{}]
    if set(names) == {"content_type_id", "object_id"}:
        return [
            {"content_type_id": str(ContentType.objects.get_for_model(model).pk), "object_id": str(obj.pk)}
            for model, obj in objects_b.items()
        ]
    if names == ["app_label"]:
        return [{"app_label": config.label} for config in apps.get_app_configs() if config.label in
                {model._meta.app_label for model in admin.site._registry}]
    if names == ["url"]:
        return [{"url": f"wecom_integration/syncrun/{objects_b[m.SyncRun].pk}/"}]
    kwargs = {}
    for name in names:
        if name in BY_ARGUMENT:
            kwargs[name] = str(objects_b[BY_ARGUMENT[name]].pk)
        elif name == "external_userid":
            kwargs[name] = objects_b[m.ExternalContact].external_userid
        elif name == "chat_id":
            kwargs[name] = objects_b[m.CustomerGroup].chat_id
        elif name == "sp_no":
            kwargs[name] = objects_b[m.Approval].sp_no
        elif name == "wecom_userid":
            kwargs[name] = objects_b[m.WeComUser].userid
        elif name == "name" and m.DomainVerificationFile in objects_b:
            # /WW_verify_<code>.txt: the file's own name is its address.
            kwargs[name] = objects_b[m.DomainVerificationFile].name
        elif name in OBJECT_ARGUMENTS:
            model = model_of(route, pattern)
            if model not in objects_b:
                raise LookupError(f"{name} of {route}: model {model} has no object of tenant B")
            kwargs[name] = str(objects_b[model].pk)
        else:
            raise LookupError(f"argument {name!r} of {route}")
    return [kwargs]


def fill(route, kwargs):
    path = route
    for name, value in kwargs.items():
        # Regex groups first: their "<name>" would otherwise be taken for a path converter.
        path = re.sub(rf"\(\?P<{name}>[^)]*\)", value, path)
        path = re.sub(rf"<(?:\w+:)?{name}>", value, path)
    return "/" + path.replace("^", "").replace("$", "").replace("\\", "")


def snapshot(objects):
    rows = {}
    for model, obj in objects.items():
        # TokenProxy's pk property is its user's id; the row is found by the real primary key.
        pk = getattr(obj, model._meta.pk.attname)
        rows[(model._meta.label, pk)] = model._default_manager.filter(**{model._meta.pk.attname: pk}).values().first()
    return rows


# What must never show to tenant A besides MARKER: B's API token (set by the fixture).
_B_NEEDLES = set()


def shows_b(response):
    body = (b"".join(response.streaming_content) if response.streaming else response.content).lower()
    return any(needle.lower().encode() in body for needle in (MARKER, *_B_NEEDLES))


def _global_objects(tenant_objects, prefix):
    """Objects of the models that belong to no tenant (groups, API tokens), named after ``prefix``."""
    user = tenant_objects[get_user_model()]
    group = Group.objects.create(name=f"{prefix}-group")
    token = Token.objects.create(user=user)
    return {Group: group, TokenProxy: TokenProxy.objects.get(user=user)}, token.key


@pytest.fixture
def tenants():
    tenant_a, tenant_b = make_tenant("sweepa"), make_tenant(MARKER, name=MARKER.upper())
    objects_a = make_tenant_objects(tenant_a, "sweepa")
    objects_b = make_tenant_objects(tenant_b, MARKER)
    extra_a, _key_a = _global_objects(objects_a, "sweepa")
    extra_b, key_b = _global_objects(objects_b, MARKER)
    objects_a.update(extra_a)
    objects_b.update(extra_b)
    _B_NEEDLES.clear()
    _B_NEEDLES.add(key_b)
    admin_a = make_tenant_admin("sweep-admin-a", tenant_a)
    return tenant_a, tenant_b, objects_a, objects_b, admin_a


def test_every_url_is_known_to_the_sweep(tenants):
    *_, objects_b, _admin = tenants
    unknown = []
    for label, route, pattern in walk():
        kind = classify(label, route, pattern)
        if kind is None:
            unknown.append(f"{label} ({route}): neither admin, API nor PUBLIC")
            continue
        if kind == "public":
            continue
        try:
            fillings(route, pattern, objects_b)
        except LookupError as exc:
            unknown.append(f"{label}: cannot fill {exc}")
    assert not unknown, "teach the sweep these URLs (or list public ones in PUBLIC):\n" + "\n".join(unknown)
    assert set(PUBLIC) - {label for label, _, _ in walk()} <= {
        "healthz", "readyz", "metrics", "wecom_integration:healthz", "wecom_integration:readyz",
        "wecom_integration:metrics",
    }, "PUBLIC names a URL that no longer exists"


def _admin_urls(objects_b):
    for label, route, pattern in walk():
        if classify(label, route, pattern) == "admin":
            for kwargs in fillings(route, pattern, objects_b):
                yield label, route, kwargs, fill(route, kwargs)


def test_admin_urls_filled_with_tenant_bs_objects_refuse_tenant_as_admin(client, tenants):
    _a, _b, _objects_a, objects_b, admin_a = tenants
    client.force_login(admin_a)
    before = snapshot(objects_b)
    leaks, allowed = [], []
    swept = 0
    for label, _route, kwargs, url in _admin_urls(objects_b):
        for method in ("get", "post"):
            response = getattr(client, method)(url, {} if method == "post" else None)
            swept += 1
            if response.status_code >= 500:
                leaks.append(f"{method.upper()} {url} ({label}): {response.status_code}")
            elif shows_b(response):
                leaks.append(f"{method.upper()} {url} ({label}): shows tenant B's data")
            elif kwargs and response.status_code == 200:
                allowed.append(f"{method.upper()} {url} ({label}): 200")
            elif response.status_code in (301, 302) and kwargs:
                followed = client.get(response["Location"])
                if followed.status_code == 200 and shows_b(followed):
                    leaks.append(f"{method.upper()} {url} ({label}) → {response['Location']}: shows B")
    assert swept > 100
    assert not leaks, "\n".join(leaks)
    # A page naming B's object that still answers 200 must at least show none of it; list them for review.
    assert not [line for line in allowed if "/change/" in line or "/delete/" in line], "\n".join(allowed)
    assert snapshot(objects_b) == before, "tenant A's admin changed an object of tenant B"


def test_admin_list_pages_search_and_actions_never_reach_tenant_b(client, tenants):
    _a, _b, objects_a, objects_b, admin_a = tenants
    client.force_login(admin_a)
    before = snapshot(objects_b)
    request = RequestFactory().get("/admin/")
    request.user = admin_a
    problems = []
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        changelist = reverse("admin:%s_%s_changelist" % info)
        # The search box echoes its term, so the term is a prefix of the marker, not the marker.
        for query in ({}, {"q": MARKER[:6]}, {"tenant__id__exact": objects_b[Tenant].pk}):
            response = client.get(changelist, query)
            if response.status_code >= 500 or shows_b(response):
                problems.append(f"{changelist} {query}: {response.status_code}, shows B: {shows_b(response)}")
        if model not in objects_b:
            continue
        for action in model_admin.get_actions(request) or {}:
            data = {"action": action, "_selected_action": [str(objects_b[model].pk)], "index": "0", "post": "yes"}
            response = client.post(changelist, data)
            if response.status_code >= 500 or shows_b(response):
                problems.append(f"action {action} on {changelist}: {response.status_code}")
        for field in model_admin.get_autocomplete_fields(request):
            query = {"app_label": info[0], "model_name": info[1], "field_name": field, "term": MARKER[:6]}
            response = client.get(reverse("admin:autocomplete"), query)
            if response.status_code >= 500 or shows_b(response):
                problems.append(f"autocomplete {query}: {response.status_code}")
    assert not problems, "\n".join(problems)
    assert snapshot(objects_b) == before, "an admin action of tenant A changed an object of tenant B"


def _api_urls(objects_a, objects_b):
    for label, route, pattern in walk():
        if classify(label, route, pattern) != "api":
            continue
        cls = view_class(pattern)
        methods = [name for name in ("get", "post", "put", "patch", "delete") if hasattr(cls, name)]
        for kwargs in fillings(route, pattern, objects_b):
            kwargs_a = fillings(route, pattern, objects_a)[0] if kwargs else {}
            yield label, route, methods, kwargs, fill(route, kwargs), fill(route, kwargs_a)


def test_api_endpoints_refuse_tenant_bs_objects_and_tenant_bs_header(client, tenants):
    tenant_a, tenant_b, objects_a, objects_b, admin_a = tenants
    token = Token.objects.create(user=admin_a).key
    as_a = {"HTTP_X_ACCESS_TOKEN": token, "HTTP_X_TENANT_ID": str(tenant_a.pk)}
    as_b = {"HTTP_X_ACCESS_TOKEN": token, "HTTP_X_TENANT_ID": str(tenant_b.pk)}
    before = snapshot(objects_b)
    problems = []
    swept = 0
    for label, _route, methods, kwargs, url_b, url_a in _api_urls(objects_a, objects_b):
        for method in methods:
            call = getattr(client, method)
            # Naming tenant B in the header: refused whatever the object, A's or B's.
            for url in {url_a, url_b}:
                response = call(url, {}, content_type="application/json", **as_b)
                swept += 1
                if response.status_code != 403 or shows_b(response):
                    problems.append(f"{method.upper()} {url} ({label}) as tenant B: {response.status_code}")
            # No token at all: refused.
            response = call(url_b, {}, content_type="application/json")
            if response.status_code not in (401, 403):
                problems.append(f"{method.upper()} {url_b} ({label}) without a token: {response.status_code}")
            if kwargs:
                # B's object through tenant A: not found or forbidden.
                response = call(url_b, {}, content_type="application/json", **as_a)
                if response.status_code not in (403, 404) or shows_b(response):
                    problems.append(f"{method.upper()} {url_b} ({label}) as tenant A: {response.status_code}")
            elif method == "get":
                # A list in tenant A: answered, with nothing of B.
                response = call(url_a, **as_a)
                if response.status_code != NOT_LISTS.get(label, 200) or shows_b(response):
                    problems.append(
                        f"GET {url_a} ({label}) as tenant A: {response.status_code}, shows B: {shows_b(response)}"
                    )
    assert swept >= 10
    assert not problems, "\n".join(problems)
    assert snapshot(objects_b) == before, "an API call of tenant A changed an object of tenant B"


def test_a_member_of_both_tenants_sees_each_tenant_only_in_its_own_header(client, tenants):
    """The header, not the token, picks the tenant: A's lists through A's header show nothing of B to an
    admin of both."""
    from tenants.models import Membership
    from tests.factories import make_member

    tenant_a, tenant_b, objects_a, objects_b, admin_a = tenants
    both = get_user_model().objects.create_user("sweep-both", password="pw-123456!")
    make_member(both, tenant_a, role=Membership.Role.ADMIN)
    make_member(both, tenant_b, role=Membership.Role.ADMIN)
    token = Token.objects.create(user=both).key
    for label, _route, methods, kwargs, _url_b, url_a in _api_urls(objects_a, objects_b):
        if kwargs or "get" not in methods:
            continue
        response = client.get(url_a, HTTP_X_ACCESS_TOKEN=token, HTTP_X_TENANT_ID=str(tenant_a.pk))
        assert response.status_code == NOT_LISTS.get(label, 200), (label, response.status_code)
        assert not shows_b(response), f"{label} in tenant A shows tenant B's data"

"""The apps bring every template they render: a host project without this repository's ``templates/``
directory renders every admin page of both apps, and a host that registers no admin for its user model
still passes the admin's system checks.
"""

from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core import checks
from django.template import engines
from django.template.loader import get_template

from tenants.admin import MembershipAdmin
from tenants.models import Membership
from tests.factories import make_tenant, make_user
from tests.security.test_isolation_sweep import classify, fill, fillings, walk
from tests.tenant_objects import make_tenant_objects

APPS = ("tenants", "wecom_integration")
# Only the project's own branding may live in the repository's templates/ directory.
PROJECT_TEMPLATES = {"admin/base_site.html", "admin/language_switch.html"}


@pytest.fixture
def without_project_templates(settings):
    """The templates a host project has: Django's and the installed apps', none of ours."""
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": []}]
    assert engines["django"].engine.dirs == []


def test_the_project_templates_directory_holds_only_the_projects_branding():
    root = Path(django_settings.BASE_DIR) / "templates"
    found = {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}
    assert found == PROJECT_TEMPLATES


def test_every_template_the_apps_name_loads_from_the_apps(without_project_templates):
    names = [
        "admin/tenants/tenant/change_form.html",
        "admin/tenants/tenant/dashboard.html",
        "admin/tenants/tenant/_dashboard.html",
        "admin/tenants/tenant/_screens.html",
        "admin/tenants/tenant/_style.html",
    ]
    for name in names:
        origin = get_template(name).origin.name
        assert "/tenants/templates/" in origin, (name, origin)


@pytest.mark.django_db
def test_every_admin_page_of_both_apps_renders_without_the_project_templates(client, without_project_templates):
    tenant = make_tenant("hostpages")
    objects = make_tenant_objects(tenant, "hostpages")
    client.force_login(make_user("host-root", staff=True, superuser=True))
    rendered = {}
    for label, route, pattern in walk():
        if classify(label, route, pattern) != "admin" or not route.startswith(tuple(f"admin/{app}/" for app in APPS)):
            continue
        for kwargs in fillings(route, pattern, objects):
            url = fill(route, kwargs)
            # The test client re-raises a view's exception (TemplateDoesNotExist among them).
            response = client.get(url)
            assert response.status_code < 500, url
            rendered[url] = response.status_code
    tenant_page = f"/admin/tenants/tenant/{tenant.pk}/change/"
    assert rendered[tenant_page] == 200
    assert rendered[f"/admin/tenants/tenant/{tenant.pk}/dashboard/"] == 200
    assert rendered["/admin/tenants/membership/add/"] == 200
    assert rendered["/admin/wecom_integration/wecomconfig/add/"] == 200
    assert sum(status == 200 for status in rendered.values()) >= 30, rendered
    # The app's own dashboard template, not a fallback: its section is on the tenant's page.
    assert b'class="tenant-dashboard"' in client.get(tenant_page).content


# A host that registers no admin for its user model -------------------------------------------------------


@pytest.fixture
def no_user_admin():
    user_model = get_user_model()
    user_admin = admin.site._registry[user_model]
    admin.site.unregister(user_model)
    try:
        yield
    finally:
        admin.site.register(user_model, type(user_admin))


def admin_errors():
    return [message for message in checks.run_checks(tags=[checks.Tags.admin]) if message.is_serious()]


def test_the_admin_checks_pass_without_a_user_admin(no_user_admin):
    assert admin_errors() == []


def test_an_autocomplete_user_field_would_fail_without_a_user_admin(no_user_admin):
    """The check the apps avoid, so the test above would see a regression."""

    class Declared(MembershipAdmin):
        autocomplete_fields = ("user",)

    assert [error.id for error in Declared(Membership, admin.site).check()] == ["admin.E039"]


@pytest.mark.django_db
def test_user_fields_are_raw_ids_without_a_user_admin_and_searchable_with_one(client):
    tenant = make_tenant("userchoice")
    client.force_login(make_user("choice-root", staff=True, superuser=True))
    pages = ("/admin/tenants/membership/add/",)
    for url in pages:
        body = client.get(url).content.decode()
        assert "admin-autocomplete" in body and 'data-field-name="user"' in body, url

    user_model = get_user_model()
    user_admin = admin.site._registry[user_model]
    admin.site.unregister(user_model)
    try:
        assert admin_errors() == []
        for url in pages:
            response = client.get(url)
            assert response.status_code == 200, url
            body = response.content.decode()
            # A raw id: a text box for the user's id (no lookup link: no user admin), never a select of all users.
            assert '<input type="text" name="user"' in body and '<select name="user"' not in body, url
        member = make_user("choice-member")
        response = client.post(
            "/admin/tenants/membership/add/",
            {"user": member.pk, "tenant": tenant.pk, "role": "member", "status": "active"},
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        assert Membership.objects.filter(user=member, tenant=tenant).exists()
    finally:
        admin.site.register(user_model, type(user_admin))

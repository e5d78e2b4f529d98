"""X-Access-Token and X-Tenant-Id handling for everything under /api/ and /sys/."""

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tenants.models import Membership
from tests.factories import make_member, make_tenant, make_user

pytestmark = pytest.mark.django_db
URL = "/api/tenant/"


@pytest.fixture
def api():
    return APIClient()


def token_for(user):
    return Token.objects.get_or_create(user=user)[0].key


def test_drf_create_token_command_issues_a_token():
    user = make_user("alice")
    call_command("drf_create_token", "alice", stdout=open("/dev/null", "w"))
    assert Token.objects.filter(user=user).exists()


def test_no_token_is_401(api):
    assert api.get(URL).status_code == 401


def test_bad_token_is_401(api):
    assert api.get(URL, HTTP_X_ACCESS_TOKEN="nope").status_code == 401
    assert api.get(URL, HTTP_X_ACCESS_TOKEN="").status_code == 401


def test_default_tenant_is_zero(api):
    user = make_user("bob")
    tenant0 = Membership.objects.model.tenant.field.related_model.objects.get(pk=0)
    make_member(user, tenant0)
    answer = api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user))
    assert answer.status_code == 200
    assert answer.json()["tenant_id"] == 0


def test_member_of_named_tenant(api):
    tenant = make_tenant("acme")
    user = make_user("carol")
    make_member(user, tenant, role=Membership.Role.ADMIN)
    answer = api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user), HTTP_X_TENANT_ID=str(tenant.pk))
    assert answer.status_code == 200
    assert answer.json()["tenant_code"] == "acme"
    assert answer.json()["role"] == "admin"


def test_not_a_member_is_403(api):
    tenant_a, tenant_b = make_tenant("a"), make_tenant("b")
    user = make_user("dave")
    make_member(user, tenant_a)
    answer = api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user), HTTP_X_TENANT_ID=str(tenant_b.pk))
    assert answer.status_code == 403
    # Tenant 0 by default, where dave is no member either.
    assert api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user)).status_code == 403


@pytest.mark.parametrize("status", [Membership.Status.PENDING, Membership.Status.REJECTED, Membership.Status.INACTIVE])
def test_member_not_active_is_403(api, status):
    tenant = make_tenant("p")
    user = make_user("erin")
    make_member(user, tenant, status=status)
    assert api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user), HTTP_X_TENANT_ID=str(tenant.pk)).status_code == 403


def test_unknown_tenant_is_404_and_malformed_is_400(api):
    user = make_user("frank", superuser=True)
    assert api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user), HTTP_X_TENANT_ID="999999").status_code == 404
    assert api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user), HTTP_X_TENANT_ID="abc").status_code == 400


def test_superuser_acts_in_every_tenant(api):
    tenant = make_tenant("any")
    user = make_user("root", superuser=True)
    answer = api.get(URL, HTTP_X_ACCESS_TOKEN=token_for(user), HTTP_X_TENANT_ID=str(tenant.pk))
    assert answer.status_code == 200
    assert answer.json()["role"] == "superuser"


def test_authorization_header_also_works(api):
    user = make_user("gina")
    tenant = make_tenant("g")
    make_member(user, tenant)
    answer = api.get(URL, HTTP_AUTHORIZATION=f"Token {token_for(user)}", HTTP_X_TENANT_ID=str(tenant.pk))
    assert answer.status_code == 200

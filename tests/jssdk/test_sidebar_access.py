"""Who reaches the chat sidebar: a signed-out visitor is sent through WeCom's in-app sign-in and back; only
active members of the tenant see it; a customer of another tenant is never shown."""

import pytest

from tests.factories import config_from_fake, make_member, make_tenant, make_user
from wecom_integration.models import ExternalContact

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant(fake_wecom, settings):
    settings.WECOM = {"API_BASE": fake_wecom.api_base}
    tenant = make_tenant("sideacc")
    config_from_fake(tenant, fake_wecom)
    return tenant


def test_signed_out_the_sidebar_starts_the_in_app_sign_in_and_comes_back(client, tenant):
    answer = client.get(f"/wecom/sidebar/{tenant.pk}/")
    assert answer.status_code == 302
    assert answer["Location"] == f"/wecom/oauth/{tenant.pk}/?next=%2Fwecom%2Fsidebar%2F{tenant.pk}%2F"
    assert client.get(f"/wecom/sidebar/{tenant.pk}/customer/wmX/").status_code == 403


def test_only_members_and_only_their_tenants_customers(client, tenant, fake_wecom):
    other = make_tenant("sideother")
    from tests.factories import make_config

    make_config(other)
    ExternalContact.objects.create(tenant=other, external_userid="wmTHEIRS", name="别人的客户")
    outsider = make_user("outsider")
    client.force_login(outsider)
    assert client.get(f"/wecom/sidebar/{tenant.pk}/").status_code == 403
    member = make_user("member")
    make_member(member, tenant)
    client.force_login(member)
    page = client.get(f"/wecom/sidebar/{tenant.pk}/")
    assert page.status_code == 200 and b"wecom-jssdk" in page.content
    theirs = client.get(f"/wecom/sidebar/{tenant.pk}/customer/wmTHEIRS/").content.decode()
    assert "别人的客户" not in theirs and "sidebar-unknown" in theirs
    assert client.get("/wecom/sidebar/999999/").status_code == 404

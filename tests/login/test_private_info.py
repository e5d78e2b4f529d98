"""#22 item 3: the member's mobile, email and avatar by consent (scope snsapi_privateinfo → user_ticket →
auth/getuserdetail), encrypted at rest, and which members consented shown in the admin."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant, make_tenant_admin, make_user
from tests.login.test_login import BACKEND, bind, session_user
from wecom_integration.login import services as flows
from wecom_integration.models import WeComConfig, WeComUser

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _backends(settings):
    if BACKEND not in settings.AUTHENTICATION_BACKENDS:
        settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS, BACKEND]


@pytest.fixture
def fake(settings, make_fake_wecom):
    # A corp of the 2022 world: the contact API withholds mobile, email and avatar.
    fake = make_fake_wecom(users=10, departments=2, seed=3, restricted=True)
    fake.add_user("zhangsan", "张三", mobile="13800000001", email="zhangsan@example.com")
    settings.WECOM_API_BASE = fake.api_base
    return fake


def sign_in(fake, tenant):
    """Sign in inside WeCom as zhangsan, with the scope the product put in the authorize URL."""
    browser = Client(headers={"accept-language": "en"})
    response = browser.get(f"/wecom/oauth/{tenant.pk}/")
    assert response.status_code == 302
    query = {key: values[0] for key, values in parse_qs(urlsplit(response["Location"]).query).items()}
    code = fake.issue_oauth_code(userid="zhangsan", scope=query["scope"])
    answer = browser.get("/wecom/oauth/callback/", {"code": code, "state": query["state"]})
    assert answer.status_code == 302, answer.content
    return browser, query["scope"]


def raw_row(userid):
    with connection.cursor() as cursor:
        cursor.execute("SELECT mobile, email, avatar FROM wecom_integration_wecomuser WHERE userid = %s", [userid])
        return cursor.fetchone()


def test_privateinfo_scope_fills_mobile_email_avatar_encrypted(fake):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake, private_info_scope=True)
    user = make_user("zhang.san")
    bind(tenant, user, "zhangsan")

    browser, scope = sign_in(fake, tenant)

    assert scope == "snsapi_privateinfo"
    assert session_user(browser) == user
    member = WeComUser.objects.get(tenant=tenant, userid="zhangsan")
    remote = fake.org.users["zhangsan"]
    assert (member.mobile, member.email, member.avatar) == ("13800000001", "zhangsan@example.com", remote.avatar)
    assert member.private_info_at is not None
    # At rest, the database holds ciphertext only.
    stored = raw_row("zhangsan")
    assert all(value.startswith("enc1:") for value in stored)
    assert not any(
        plain in value for value in stored for plain in ("13800000001", "zhangsan@example.com", remote.avatar)
    )
    assert fake.calls["auth/getuserdetail"] == 1


def test_base_scope_gets_no_ticket_and_records_no_consent(fake):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake)
    user = make_user("zhang.san")
    bind(tenant, user, "zhangsan")

    browser, scope = sign_in(fake, tenant)

    assert scope == "snsapi_base"
    assert session_user(browser) == user
    member = WeComUser.objects.get(tenant=tenant, userid="zhangsan")
    assert (member.mobile, member.email, member.avatar, member.private_info_at) == ("", "", "", None)
    assert fake.calls["auth/getuserdetail"] == 0


def test_a_refused_ticket_fills_nothing_and_signs_in_anyway(fake):
    tenant = make_tenant("acme")
    config = config_from_fake(tenant, fake, private_info_scope=True)
    member = WeComUser.objects.create(tenant=tenant, userid="zhangsan", name="张三")
    assert flows.fill_private_info(config, member, "not-a-ticket") is False  # WeCom answers 84015
    member.refresh_from_db()
    assert member.private_info_at is None and member.mobile == ""


def test_the_setting_is_labelled_in_both_languages():
    field = WeComConfig._meta.get_field("private_info_scope")
    from django.utils import translation

    with translation.override("zh-hans"):
        assert "snsapi_privateinfo" in str(field.verbose_name) and "个人信息" in str(field.verbose_name)
    with translation.override("en"):
        assert "private information" in str(field.verbose_name)


@pytest.mark.parametrize("language, column", [("en", "shared private information"), ("zh-hans", "已授权个人信息")])
def test_admin_shows_who_consented(fake, language, column):
    tenant = make_tenant("acme")
    config_from_fake(tenant, fake, private_info_scope=True)
    bind(tenant, make_user("zhang.san"), "zhangsan")
    sign_in(fake, tenant)
    WeComUser.objects.create(tenant=tenant, userid="lisi", name="李四")
    admin = make_tenant_admin("boss", tenant)
    browser = Client(headers={"accept-language": language})
    browser.force_login(admin)
    url = reverse("admin:wecom_integration_wecomuser_changelist")

    page = browser.get(url).content.decode()
    assert column in page and "zhangsan" in page and "lisi" in page
    consented = browser.get(url, {"consented": "yes"}).content.decode()
    assert "zhangsan" in consented and "lisi" not in consented
    refused = browser.get(url, {"consented": "no"}).content.decode()
    assert "lisi" in refused and ">zhangsan<" not in refused


def test_plaintext_written_before_0006_is_readable_then_encrypted_by_the_migration(fake):
    import importlib
    from types import SimpleNamespace

    tenant = make_tenant("acme")
    member = WeComUser.objects.create(tenant=tenant, userid="old", name="旧")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE wecom_integration_wecomuser SET mobile = %s, email = %s WHERE id = %s",
            ["13900000009", "old@example.com", member.pk],
        )
    member.refresh_from_db()
    assert (member.mobile, member.email) == ("13900000009", "old@example.com")  # a rolling upgrade reads it

    migration = importlib.import_module("wecom_integration.migrations.0006_private_info_callback_attempts_egress")
    migration.encrypt_personal_data(None, SimpleNamespace(connection=connection))

    stored = raw_row("old")
    assert stored[0].startswith("enc1:") and "13900000009" not in stored[0]
    assert stored[2] == ""  # empty stays empty
    member.refresh_from_db()
    assert (member.mobile, member.email) == ("13900000009", "old@example.com")


def test_key_rotation_re_encrypts_members_personal_data(settings, fake):
    from django.core.management import call_command

    tenant = make_tenant("acme")
    settings.WECOM_FIELD_KEYS = ["old-key"]
    WeComUser.objects.create(tenant=tenant, userid="m1", name="一", mobile="13700000001")
    before = raw_row("m1")[0]
    settings.WECOM_FIELD_KEYS = ["new-key", "old-key"]
    call_command("wecom_rotate_keys", stdout=open("/dev/null", "w"))
    settings.WECOM_FIELD_KEYS = ["new-key"]
    assert raw_row("m1")[0] != before
    assert WeComUser.objects.get(userid="m1").mobile == "13700000001"

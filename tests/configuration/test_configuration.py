"""Per-tenant WeCom configuration: validation, encryption at rest, key rotation, configure command."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import translation

from tenants.models import DEFAULT_TENANT_ID, Membership, Tenant
from tests.factories import aes_key, make_config, make_tenant, make_user
from wecom_integration.models import WeComConfig

pytestmark = pytest.mark.django_db


def raw_row(config):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {WeComConfig._meta.db_table} WHERE id = %s", [config.pk])
        return [str(value) for value in cursor.fetchone()]


def test_default_tenant_zero_exists():
    assert Tenant.objects.get(pk=DEFAULT_TENANT_ID).code == "default"


def test_raw_row_holds_no_plaintext_secret():
    config = make_config(make_tenant("acme"), secret="SuperSecretValue123", app_token="TokenABC123")
    row = " ".join(raw_row(config))
    for field in WeComConfig.WRITE_ONLY_FIELDS:
        value = getattr(config, field)
        if value:
            assert value not in row, field
    fresh = WeComConfig.objects.get(pk=config.pk)
    assert fresh.secret == "SuperSecretValue123"
    assert fresh.app_token == "TokenABC123"
    assert "SuperSecretValue123" not in repr(fresh) and "SuperSecretValue123" not in str(fresh)


def test_key_rotation_old_data_still_reads():
    with override_settings(WECOM_FIELD_KEYS=["old-key"]):
        config = make_config(make_tenant("rot"), secret="rotate-me")
        old_row = raw_row(config)
    with override_settings(WECOM_FIELD_KEYS=["new-key", "old-key"]):
        assert WeComConfig.objects.get(pk=config.pk).secret == "rotate-me"
        call_command("wecom_rotate_keys", stdout=open("/dev/null", "w"))
        assert raw_row(config) != old_row
    with override_settings(WECOM_FIELD_KEYS=["new-key"]):
        # After rotation the old key is no longer needed.
        assert WeComConfig.objects.get(pk=config.pk).secret == "rotate-me"


def test_missing_key_is_a_clear_error_without_the_value():
    with override_settings(WECOM_FIELD_KEYS=["a-key"]):
        config = make_config(make_tenant("lost"), secret="never-shown")
    with override_settings(WECOM_FIELD_KEYS=["other-key"]):
        with pytest.raises(Exception) as excinfo:
            WeComConfig.objects.get(pk=config.pk)
        assert "WECOM_FIELD_KEYS" in str(excinfo.value)
        assert "never-shown" not in str(excinfo.value)


@pytest.mark.parametrize(
    "field,value,code",
    [
        ("contact_aes_key", "short", "invalid_aes_key"),
        ("contact_aes_key", "!" * 43, "invalid_aes_key"),
        ("app_aes_key", aes_key() + "A", "invalid_aes_key"),
        ("customer_token", "x" * 33, "invalid_token"),
        ("app_token", "has space", "invalid_token"),
        ("app_token", "中文", "invalid_token"),
        ("corp_id", "ww-bad id", "invalid_corp_id"),
    ],
)
def test_validation_refuses(field, value, code):
    with pytest.raises(ValidationError) as excinfo:
        make_config(make_tenant("v"), **{field: value})
    assert code in [e.code for e in excinfo.value.error_dict[field]]


def test_agent_id_must_be_positive():
    with pytest.raises(ValidationError) as excinfo:
        make_config(make_tenant("neg"), agent_id=-1)
    assert "agent_id" in excinfo.value.error_dict


def test_valid_token_and_key_are_accepted():
    config = make_config(make_tenant("ok"), app_token="A" * 32, app_aes_key=aes_key())
    assert config.pk


def test_duplicate_corp_id_is_refused_in_both_languages():
    make_config(make_tenant("one"), corp_id="ww0123456789abcdef")
    for lang, expected in (("en", "already used by another tenant"), ("zh-hans", "AppKey重复")):
        with translation.override(lang):
            with pytest.raises(ValidationError) as excinfo:
                make_config(make_tenant(f"two-{lang}"), corp_id="ww0123456789abcdef")
            assert expected in " ".join(str(m) for m in excinfo.value.message_dict["corp_id"])


def test_aes_key_message_in_chinese():
    with translation.override("zh-hans"):
        with pytest.raises(ValidationError) as excinfo:
            make_config(make_tenant("zh"), app_aes_key="short")
        # The messages are lazy: read them while Chinese is active, as a page would render them.
        message = str(excinfo.value.message_dict["app_aes_key"][0])
    assert "43" in message
    assert "EncodingAESKey" in message
    assert "must be" not in message


def _configure(*args, **env):
    from io import StringIO

    out = StringIO()
    call_command("wecom_configure", *args, stdout=out)
    return json.loads(out.getvalue())


def test_configure_command_is_idempotent_and_prints_urls():
    make_user("boss")
    key = aes_key()
    args = [
        "--tenant-code", "acme", "--tenant-name", "Acme", "--corp-id", "ww1111222233334444",
        "--agent-id", "1000002", "--secret", "s1", "--contact-token", "tok1", "--contact-aes-key", key,
        "--admin", "boss",
    ]
    first = _configure(*args)
    second = _configure(*args)
    assert first == second
    tenant = Tenant.objects.get(code="acme")
    assert first["tenant_id"] == tenant.pk
    assert first["callback_urls"]["contacts"].endswith(f"/wecom/callback/{tenant.pk}/contacts/")
    assert set(first["callback_urls"]) == {"app", "contacts", "customers"}
    assert WeComConfig.objects.filter(tenant=tenant).count() == 1
    membership = Membership.objects.get(tenant=tenant, user__username="boss")
    assert (membership.role, membership.status) == ("admin", "active")
    # An update keeps what it was not given.
    _configure("--tenant-code", "acme", "--agent-id", "1000003")
    config = WeComConfig.objects.get(tenant=tenant)
    assert (config.agent_id, config.secret, config.contact_token) == (1000003, "s1", "tok1")


def test_configure_command_sets_the_customer_and_two_step_credentials():
    _configure("--tenant-code", "newcorp", "--corp-id", "ww5555", "--agent-id", "8",
               "--customer-credential", "app", "--two-step-credential", "app")
    config = WeComConfig.objects.get(tenant__code="newcorp")
    assert (config.customer_credential, config.two_step_credential) == ("app", "app")
    with pytest.raises(CommandError):
        _configure("--tenant-code", "newcorp", "--customer-credential", "both")


def test_configure_command_reads_secrets_from_a_json_file_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WECOM_SECRET", "from-env")
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"secret": "from-file", "contact_token": "tok2"}))
    _configure("--tenant-code", "envt", "--corp-id", "ww9999", "--agent-id", "7", "--from-json", str(values))
    config = WeComConfig.objects.get(tenant__code="envt")
    assert (config.secret, config.contact_token) == ("from-file", "tok2")
    # The command line wins over the file.
    _configure("--tenant-code", "envt", "--secret", "from-option", "--from-json", str(values))
    assert WeComConfig.objects.get(tenant__code="envt").secret == "from-option"
    values.write_text(json.dumps({"sekret": "typo"}))
    with pytest.raises(CommandError, match="unknown keys sekret"):
        _configure("--tenant-code", "envt", "--from-json", str(values))


def test_configure_command_builds_callback_urls_on_the_deployments_address(settings):
    from io import StringIO

    out = _configure("--tenant-code", "addr", "--corp-id", "ww5555", "--agent-id", "1",
                     "--base-url", "https://erp.example.com/")
    tenant_id = out["tenant_id"]
    assert out["base_url"] == "https://erp.example.com"
    assert out["callback_urls"]["app"] == f"https://erp.example.com/wecom/callback/{tenant_id}/app/"

    settings.WECOM = {**settings.WECOM, "PUBLIC_BASE_URL": "https://wecom.example.org"}
    assert _configure("--tenant-code", "addr")["callback_urls"]["contacts"] == (
        f"https://wecom.example.org/wecom/callback/{tenant_id}/contacts/"
    )

    # Neither: paths, and a clear word on stderr; never a made-up host.
    settings.WECOM = {**settings.WECOM, "PUBLIC_BASE_URL": ""}
    out, err = StringIO(), StringIO()
    call_command("wecom_configure", "--tenant-code", "addr", stdout=out, stderr=err)
    printed = json.loads(out.getvalue())
    assert printed["base_url"] is None
    assert printed["callback_urls"]["customers"] == f"/wecom/callback/{tenant_id}/customers/"
    assert "No public address is known" in err.getvalue()
    assert "127.0.0.1" not in out.getvalue()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--agent-id", "abc"], "AgentId"),
        (["--agent-id", "1", "--app-aes-key", "short"], "EncodingAESKey"),
        (["--agent-id", "1", "--app-token", "bad token!"], "Token"),
    ],
)
def test_configure_command_errors(extra, message):
    with translation.override("en"), pytest.raises(CommandError) as excinfo:
        call_command("wecom_configure", "--tenant-code", "bad", "--corp-id", "ww1234", *extra)
    assert message in str(excinfo.value)
    assert not WeComConfig.objects.filter(tenant__code="bad").exists()


def test_configure_command_refuses_corp_id_of_another_tenant():
    make_config(make_tenant("first"), corp_id="wwtaken")
    with translation.override("en"), pytest.raises(CommandError, match="already used"):
        call_command("wecom_configure", "--tenant-code", "second", "--corp-id", "wwtaken", "--agent-id", "1")
    assert not Tenant.objects.filter(code="second").exists()


def test_configure_command_unknown_admin():
    with pytest.raises(CommandError, match="nobody"):
        call_command(
            "wecom_configure", "--tenant-code", "x", "--corp-id", "wwx", "--agent-id", "1", "--admin", "nobody"
        )
    assert not Tenant.objects.filter(code="x").exists()

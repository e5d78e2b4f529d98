"""A tenant admin of A sees and changes only A's objects, on every admin URL of every registered model."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import make_tenant, make_tenant_admin
from tests.tenant_objects import make_tenant_objects

pytestmark = pytest.mark.django_db

# Models that are not tenant-owned and that a tenant admin must not manage at all.
GLOBAL_MODELS = {"auth.group", "authtoken.tokenproxy", "authtoken.token"}


@pytest.fixture
def two_tenants(client):
    tenant_a, tenant_b = make_tenant("ta"), make_tenant("tb")
    objects_a = make_tenant_objects(tenant_a, "aaa")
    objects_b = make_tenant_objects(tenant_b, "bbb")
    admin_a = make_tenant_admin("admin-a", tenant_a)
    client.force_login(admin_a)
    return objects_a, objects_b


def registered():
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()]


def label(model):
    return f"{model._meta.app_label}.{model._meta.model_name}"


def test_every_registered_model_is_covered(two_tenants):
    objects_a, _ = two_tenants
    missing = [
        label(model)
        for model, _ in registered()
        if model not in objects_a and label(model) not in GLOBAL_MODELS
    ]
    assert missing == []


def test_other_tenants_objects_are_out_of_reach(client, two_tenants):
    objects_a, objects_b = two_tenants
    checked = 0
    for model, _ in registered():
        if model not in objects_b:
            continue
        info = model._meta.app_label, model._meta.model_name
        obj_b, obj_a = objects_b[model], objects_a[model]
        changelist = client.get(reverse("admin:%s_%s_changelist" % info))
        if model is get_user_model() and changelist.status_code == 403:
            continue  # user management is the superuser's
        assert changelist.status_code == 200, label(model)
        shown = {o.pk for o in changelist.context["cl"].result_list}
        assert obj_a.pk in shown, label(model)
        assert obj_b.pk not in shown, label(model)
        for view in ("change", "delete", "history"):
            url = reverse(f"admin:%s_%s_{view}" % info, args=[obj_b.pk])
            assert client.get(url).status_code in (403, 404), f"{label(model)} {view}"
        post = client.post(reverse("admin:%s_%s_change" % info, args=[obj_b.pk]), {})
        assert post.status_code in (403, 404), label(model)
        assert model._default_manager.filter(pk=obj_b.pk).exists()
        checked += 1
    assert checked >= 10


def test_custom_admin_urls_refuse_other_tenants(client, two_tenants):
    _, objects_b = two_tenants
    from wecom_integration.models import WeComConfig

    url = reverse("admin:wecom_integration_wecomconfig_test_connection", args=[objects_b[WeComConfig].pk])
    assert client.get(url).status_code in (403, 404)
    assert client.post(url).status_code in (403, 404)


def test_write_only_secrets_never_rendered(client, two_tenants):
    objects_a, _ = two_tenants
    from wecom_integration.models import WeComConfig

    config = objects_a[WeComConfig]
    page = client.get(reverse("admin:wecom_integration_wecomconfig_change", args=[config.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for field in WeComConfig.WRITE_ONLY_FIELDS:
        value = getattr(config, field)
        if value:
            assert value not in html, field
    assert f"/wecom/callback/{config.tenant_id}/contacts/" in html


def test_blank_secret_keeps_the_stored_value(client, two_tenants):
    objects_a, _ = two_tenants
    from wecom_integration.models import WeComConfig

    config = objects_a[WeComConfig]
    old_secret, old_key = config.secret, config.app_aes_key
    data = {
        "corp_id": config.corp_id,
        "agent_id": "1000005",
        "enabled": "on",
        "sync_interval_minutes": "60",
        "secret": "",
        "app_token": "NewToken1",
    }
    answer = client.post(reverse("admin:wecom_integration_wecomconfig_change", args=[config.pk]), data)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    config.refresh_from_db()
    assert (config.agent_id, config.secret, config.app_aes_key, config.app_token) == (
        1000005,
        old_secret,
        old_key,
        "NewToken1",
    )


def test_tenant_admin_cannot_reassign_to_other_tenant(client, two_tenants):
    objects_a, objects_b = two_tenants
    from tenants.models import Tenant

    add = client.get(reverse("admin:wecom_integration_department_add"))
    if add.status_code == 200:
        choices = {str(pk) for pk, _ in add.context["adminform"].form.fields["tenant"].choices if pk}
        assert str(objects_a[Tenant].pk) in choices
        assert str(objects_b[Tenant].pk) not in choices

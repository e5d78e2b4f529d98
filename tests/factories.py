"""Small helpers to build tenants, users and configurations in tests."""

import base64
import secrets

from django.contrib.auth import get_user_model

from tenants.models import Membership, Tenant
from wecom_integration.models import WeComConfig

User = get_user_model()


def aes_key():
    """A valid random EncodingAESKey (43 characters)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()[:-1]


def make_tenant(code, name=None):
    return Tenant.objects.create(code=code, name=name or code.upper())


def make_user(username, *, staff=False, superuser=False, password="pw-123456!", **fields):
    user = User.objects.create_user(username=username, password=password, is_staff=staff or superuser, **fields)
    if superuser:
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])
    return user


def make_member(user, tenant, role=Membership.Role.MEMBER, status=Membership.Status.ACTIVE):
    return Membership.objects.create(user=user, tenant=tenant, role=role, status=status)


def make_tenant_admin(username, tenant):
    user = make_user(username, staff=True)
    make_member(user, tenant, role=Membership.Role.ADMIN)
    return user


def make_config(tenant, corp_id=None, **fields):
    values = dict(
        corp_id=corp_id or f"ww{secrets.token_hex(8)}",
        agent_id=1000002,
        secret="app-secret-" + secrets.token_hex(8),
        contact_secret="contact-secret-" + secrets.token_hex(8),
        contact_token="ctoken" + secrets.token_hex(4),
        contact_aes_key=aes_key(),
        customer_secret="customer-secret-" + secrets.token_hex(8),
        customer_token="utoken" + secrets.token_hex(4),
        customer_aes_key=aes_key(),
        app_token="atoken" + secrets.token_hex(4),
        app_aes_key=aes_key(),
    )
    values.update(fields)
    config = WeComConfig(tenant=tenant, **values)
    config.full_clean()
    config.save()
    return config


def config_from_fake(tenant, fake, **fields):
    """A configuration whose credentials are the fake WeCom's."""
    return make_config(
        tenant,
        corp_id=fake.corp_id,
        agent_id=fake.agent_id,
        secret=fake.secret,
        contact_secret=fake.contact_secret,
        customer_secret=fake.customer_secret,
        **fields,
    )

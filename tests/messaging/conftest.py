"""Fixtures of the messaging tests over real HTTP."""

import pytest
from django.urls import reverse

from tests.factories import config_from_fake, make_tenant
from wecom_integration.models import WeComUser


@pytest.fixture
def wired(live_server, transactional_db, fake_wecom, settings):
    """A tenant configured with the fake, its app callback URL registered with the fake, members mirrored,
    one bound to a local user."""
    settings.WECOM = {"API_BASE": fake_wecom.api_base, "BUSY_RETRIES": 0, "BUSY_BACKOFF": 0}
    config = config_from_fake(make_tenant("cards"), fake_wecom)
    token, aes_key = config.callback_credentials("app")
    url = live_server.url + reverse("wecom_integration:callback-app", kwargs={"tenant_id": config.tenant_id})
    fake_wecom.register_callback(url, token, aes_key, kind="app")
    for userid, user in fake_wecom.org.users.items():
        WeComUser.objects.create(tenant=config.tenant, userid=userid, name=user.name)
    return config

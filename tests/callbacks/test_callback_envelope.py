"""Issue 16 item 4: the callback envelope's ``ToUserName`` must name the tenant's corp.

The fake's signer seals a correct message (the right Token, key and receiveid) in an envelope that
names another corp, or none: it is refused like any other bad callback (4xx, one log line with the
reason, nothing stored) for every kind of callback URL.
"""

import re

import pytest
from django.test import TestCase

from tests.callbacks.test_callbacks import post_envelope, sender_for
from tests.factories import make_config, make_tenant
from wecom_integration.models import CallbackEvent, InboxMessage, WeComUser
from wecom_integration.testing.callbacks import (
    build_contact_user_xml,
    build_external_contact_xml,
    build_message_xml,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def config():
    return make_config(make_tenant("env"))


@pytest.fixture
def other_config():
    return make_config(make_tenant("other"))


def xml_for(config, kind):
    if kind == "app":
        return build_message_xml(config.corp_id, "zhangsan", config.agent_id, content="hi", msg_id=7)
    if kind == "contacts":
        return build_contact_user_xml(config.corp_id, "create_user", {"userid": "spy", "name": "Spy"})
    return build_external_contact_xml(config.corp_id, "add_external_contact", "zhangsan", "wmSpy")


def deliver(client, config, kind, body_edit=None, **envelope_kwargs):
    params, body = sender_for(config, kind).envelope(xml_for(config, kind), **envelope_kwargs)
    if body_edit is not None:
        body = body_edit(body)
    with TestCase.captureOnCommitCallbacks(execute=True):
        return post_envelope(client, config, kind, params, body)


def nothing_stored():
    return not (CallbackEvent.objects.exists() or InboxMessage.objects.exists() or WeComUser.objects.exists())


@pytest.mark.parametrize("kind", ["app", "contacts", "customers"])
def test_an_envelope_naming_the_corp_is_stored(client, config, kind):
    answer = deliver(client, config, kind)
    assert answer.status_code == 200
    assert CallbackEvent.objects.filter(kind=kind).count() == 1


@pytest.mark.parametrize("kind", ["app", "contacts", "customers"])
@pytest.mark.parametrize(
    "to_user_name",
    # (Surrounding whitespace is dropped by the envelope's parser, as it is around Encrypt.)
    ["wwanothercorp0001", "", "{upper}", "{corp}x", "x{corp}", "{corp}\u200b", "{other}"],
)
def test_an_envelope_naming_another_corp_is_refused(client, config, other_config, caplog, kind, to_user_name):
    to_user_name = to_user_name.format(
        corp=config.corp_id, upper=config.corp_id.upper(), other=other_config.corp_id
    )
    with caplog.at_level("WARNING", logger="wecom_integration.callbacks"):
        answer = deliver(client, config, kind, to_user_name=to_user_name)

    assert 400 <= answer.status_code < 500
    assert nothing_stored()
    assert re.search(r"reason=envelope_(not_for_this_corp|without_corp)", caplog.text)


@pytest.mark.parametrize("kind", ["app", "contacts", "customers"])
def test_an_envelope_without_to_user_name_is_refused(client, config, caplog, kind):
    def drop_to_user_name(body):
        return re.sub(rb"<ToUserName>.*?</ToUserName>", b"", body, flags=re.S)

    with caplog.at_level("WARNING", logger="wecom_integration.callbacks"):
        answer = deliver(client, config, kind, body_edit=drop_to_user_name)

    assert answer.status_code == 400
    assert nothing_stored()
    assert "reason=envelope_without_corp" in caplog.text


def test_a_retried_delivery_with_another_envelope_is_refused_too(client, config):
    """The first delivery is stored; a replay of its ciphertext under another corp's name is not."""
    params, body = sender_for(config, "app").envelope(xml_for(config, "app"))
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert post_envelope(client, config, "app", params, body).status_code == 200
    forged = body.replace(config.corp_id.encode(), b"wwanothercorp0001")
    assert post_envelope(client, config, "app", params, forged).status_code == 400
    assert CallbackEvent.objects.get().attempts == 1

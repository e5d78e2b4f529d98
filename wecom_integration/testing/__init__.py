"""Test kit shipped with the package: a faithful fake WeCom server and a callback signer.

Importable without Django configured (stdlib, requests, defusedxml, cryptography, msgspec), so host
projects, the demo and the benchmarks can all use it::

    from wecom_integration.testing import FakeWeCom

    with FakeWeCom(users=200, departments=20, seed=1) as fake:
        client_settings = fake.credentials()   # api_base, corp_id, agent_id and the three secrets

pytest users get the ``fake_wecom`` and ``make_fake_wecom`` fixtures from
``wecom_integration.testing.pytest_plugin``. What the fake models (each behaviour with the WeCom doc page it
follows and the test that shows it) and what it does not: docs/fake-wecom.md.
"""

from wecom_integration.testing.callbacks import (
    CallbackSender,
    CallbackVerificationError,
    DeliveryResult,
    build_contact_party_xml,
    build_contact_user_xml,
    build_event_xml,
    build_external_contact_xml,
    build_message_xml,
)
from wecom_integration.testing.org import Org
from wecom_integration.testing.server import CALLBACK_KINDS, FakeWeCom, FakeWeComError

__all__ = [
    "CALLBACK_KINDS",
    "CallbackSender",
    "CallbackVerificationError",
    "DeliveryResult",
    "FakeWeCom",
    "FakeWeComError",
    "Org",
    "build_contact_party_xml",
    "build_contact_user_xml",
    "build_event_xml",
    "build_external_contact_xml",
    "build_message_xml",
]

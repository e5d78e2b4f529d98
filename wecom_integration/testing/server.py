"""The fake WeCom server under its original import path.

The fake lives in the package :mod:`wecom_integration.testing.fake`, one module per WeCom API group (its
docstring maps them). This module re-exports every name it used to define, private ones included, so
``from wecom_integration.testing.server import FakeWeCom, serve_until_signalled`` (and ``_RateLimiter``,
``ROUTES`` …) keep working.
"""

from .callbacks import (  # noqa: F401 - imported here before the split
    CallbackSender,
    DeliveryResult,
    build_contact_party_xml,
    build_contact_user_xml,
    build_event_xml,
    build_external_contact_xml,
    build_message_xml,
)
from .fake.base import (  # noqa: F401 - re-exported under the old path
    _APP,
    _CONTACTS,
    _CUSTOMERS,
    _DIRECTORY,
    _DROP,
    _JSON,
    ERRMSG,
    FakeWeComError,
    _ApiError,
    _Encoded,
    _is_int_between,
    _json_bytes,
    _Request,
    _Route,
)
from .fake.control import _AVATAR_PNG, _tiny_png  # noqa: F401
from .fake.core import QUOTA_EXEMPT, ROUTES, TOKEN_LENGTH, FakeWeCom  # noqa: F401
from .fake.http import MAX_BODY, _Handler, _HTTPServer, serve_until_signalled  # noqa: F401
from .fake.limits import _Faults, _normalise_api, _RateLimiter  # noqa: F401
from .fake.media import MEDIA_RULES, MEDIA_TTL, _multipart_file  # noqa: F401
from .fake.menu import MENU_TYPES, _check_button  # noqa: F401
from .fake.message import (  # noqa: F401
    BEIJING,
    INTERACTIVE_CARDS,
    MESSAGE_TYPES,
    MESSAGES_PER_ACCOUNT_PER_DAY,
    TEXT_LIMIT_BYTES,
    _Sent,
    _truncate_utf8,
)
from .fake.oauth import OAUTH_CODE_TTL, OAUTH_SCOPES, TFA_CODE_TTL, USER_TICKET_TTL  # noqa: F401
from .fake.org import SENSITIVE_USER_FIELDS, ExternalContact, Follow, Org, User, dept_user_json  # noqa: F401
from .fake.push import CALLBACK_KINDS, _Registration  # noqa: F401

__all__ = ["FakeWeCom", "FakeWeComError", "CALLBACK_KINDS"]

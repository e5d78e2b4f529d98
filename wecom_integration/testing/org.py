"""The generated WeCom organisation under its original import path.

It lives in :mod:`wecom_integration.testing.fake`: ``fake/org.py`` (the contact book, ``Org``),
``fake/orgmodel.py`` (departments, members, external contacts, relations, cursors) and ``fake/orgdata.py``
(the name tables and the generation). This module re-exports every name it used to define, private ones
included, so ``from wecom_integration.testing.org import Org, SENSITIVE_USER_FIELDS, dept_user_json`` keeps
working.
"""

from .fake.org import _QR_BASE, Org  # noqa: F401 - re-exported under the old path
from .fake.orgdata import (  # noqa: F401
    _COMMON_GIVEN,
    _COMPANIES,
    _DEPTH_SUFFIXES,
    _EXTERNAL_CORPS,
    _FAMILIES,
    _FAMILY_ROWS,
    _GIVEN_CHARS,
    _GIVEN_ROWS,
    _NICKNAMES,
    _NUMERALS,
    _PINYIN,
    _POSITION_CUM,
    _POSITION_NAMES,
    _POSITIONS,
    _SURNAME_CUM,
    _SURNAME_ROWS,
    _SURNAMES,
    _TAGS,
    _TOP_SUFFIXES,
    _department_name,
    _depth_counts,
    _ensure_duplicates,
    _parse_table,
)
from .fake.orgmodel import (  # noqa: F401
    _MOBILE_PREFIXES,
    SENSITIVE_USER_FIELDS,
    Department,
    ExternalContact,
    Follow,
    User,
    _encode_cursor,
    _quote_json,
    _stable_hex,
    decode_cursor,
    dept_user_json,
)

__all__ = [
    "SENSITIVE_USER_FIELDS", "Department", "ExternalContact", "Follow", "Org", "User", "dept_user_json",
]

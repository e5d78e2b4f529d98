"""The records of a fake corp's contact book: departments, members, external contacts and the relations
between members and their customers, plus the opaque cursors and the list_id JSON the API pages use.

Compact enough that 100,000 members fit in tens of megabytes: members are ``__slots__`` objects whose
bulky, derivable fields (mobile, email, avatar …) are computed on demand from the member's number and the
org's seed, unless set in ``extra``.

The fields follow the contact API pages:

* user/get https://developer.work.weixin.qq.com/document/path/90196
* department/list https://developer.work.weixin.qq.com/document/path/90208
* user/list_id https://developer.work.weixin.qq.com/document/path/96067
* externalcontact/get https://developer.work.weixin.qq.com/document/path/92114
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .org import Org


# Withheld from user/get and user/simplelist under the 2022 restrictions, and from contact callbacks.
SENSITIVE_USER_FIELDS = (
    "mobile", "email", "biz_mail", "avatar", "thumb_avatar", "gender", "address", "telephone", "qr_code",
)


_quote_json = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept as is
_MOBILE_PREFIXES = ("138", "139", "150", "151", "152", "158", "159", "186", "187", "188", "135", "136",
                    "137", "180", "189", "133", "153", "177", "181", "199")


def _stable_hex(*parts: object, length: int = 32) -> str:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=32).hexdigest()
    return digest[:length]


class Department:
    """One department (部门). ``children`` stay sorted by WeCom's rule: larger ``order`` first."""

    __slots__ = ("id", "name", "name_en", "parentid", "order", "depth", "children", "members", "leaders")

    def __init__(self, id: int, name: str, name_en: str, parentid: int, order: int, depth: int):
        self.id = id
        self.name = name
        self.name_en = name_en
        self.parentid = parentid
        self.order = order
        self.depth = depth
        self.children: list[int] = []
        self.members: list[User] = []
        self.leaders: list[User] = []

    def __repr__(self) -> str:
        return f"<Department {self.id} {self.name}>"


class User:
    """One member (成员). Derivable contact fields are computed from ``n`` unless overridden in ``extra``."""

    __slots__ = ("n", "seq", "userid", "name", "departments", "leader_in", "position", "gender", "status",
                 "main_department", "extra", "follows", "_org")

    def __init__(self, org: Org, n: int, seq: int, userid: str, name: str, departments: tuple[int, ...],
                 position: str, gender: str, status: int):
        self._org = org
        self.n = n
        self.seq = seq
        self.userid = userid
        self.name = name
        self.departments = departments
        self.leader_in = (0,) * len(departments)
        self.position = position
        self.gender = gender
        self.status = status
        self.main_department = departments[0]
        self.extra: dict | None = None
        self.follows: list[Follow] | None = None

    def __repr__(self) -> str:
        return f"<User {self.userid} {self.name}>"

    def _get(self, key: str, default: str) -> str:
        extra = self.extra
        if extra is not None and key in extra:
            return extra[key]
        return default

    def set_extra(self, key: str, value) -> None:
        if self.extra is None:
            self.extra = {}
        self.extra[key] = value

    @property
    def mobile(self) -> str:
        # Multiplying by a number coprime to 10**8 permutes the suffixes, so mobiles are unique.
        suffix = (self.n * 7919 + self._org.seed * 104729) % 100_000_000
        return self._get("mobile", f"{_MOBILE_PREFIXES[self.n % len(_MOBILE_PREFIXES)]}{suffix:08d}")

    @property
    def email(self) -> str:
        return self._get("email", f"{self.userid}@{self._org.mail_domain}")

    @property
    def biz_mail(self) -> str:
        return self._get("biz_mail", f"{self.userid}@{self._org.biz_mail_domain}")

    @property
    def avatar(self) -> str:
        return self._get("avatar", f"{self._org.avatar_base}/{_stable_hex(self._org.seed, self.n)}/0")

    @property
    def alias(self) -> str:
        return self._get("alias", "")

    @property
    def telephone(self) -> str:
        return self._get("telephone", f"021-{60000000 + self.n % 9999999}" if self.n % 4 == 0 else "")

    @property
    def address(self) -> str:
        return self._get("address", "上海市浦东新区世纪大道100号" if self.n % 3 == 0 else "")

    @property
    def open_userid(self) -> str:
        return "wo" + _stable_hex("open", self._org.seed, self.n, length=30)

    @property
    def direct_leader(self) -> list[str]:
        dept = self._org.departments.get(self.main_department)
        if dept is None:
            return []
        return [leader.userid for leader in dept.leaders[:1] if leader is not self]


class ExternalContact:
    """A customer (外部联系人) added by one or more members."""

    __slots__ = ("external_userid", "name", "type", "gender", "unionid", "corp_name", "position", "n",
                 "followers")

    def __init__(self, external_userid: str, name: str, type: int, gender: int, n: int,
                 unionid: str = "", corp_name: str = "", position: str = ""):
        self.external_userid = external_userid
        self.name = name
        self.type = type
        self.gender = gender
        self.n = n
        self.unionid = unionid
        self.corp_name = corp_name
        self.position = position
        self.followers: list[Follow] = []


class Follow:
    """The relation between a member and an external contact (follow_user / follow_info)."""

    __slots__ = ("user", "contact", "remark", "description", "createtime", "tag_ids", "add_way", "state",
                 "remark_mobiles")

    def __init__(self, user: User, contact: ExternalContact, remark: str, description: str, createtime: int,
                 tag_ids: tuple[str, ...], add_way: int, state: str, remark_mobiles: tuple[str, ...] = ()):
        self.user = user
        self.contact = contact
        self.remark = remark
        self.description = description
        self.createtime = createtime
        self.tag_ids = tag_ids
        self.add_way = add_way
        self.state = state
        self.remark_mobiles = remark_mobiles


def dept_user_json(rows: list[tuple[str, int]]) -> str:
    """user/list_id's dept_user array as JSON text. Pages of 10,000 rows are the hot path of every
    sync benchmark, so they are formatted directly instead of going through dicts and json.dumps."""
    quote = _quote_json
    return "[" + ",".join([f'{{"userid":{quote(u)},"department":{d}}}' for u, d in rows]) + "]"


def _encode_cursor(*numbers: int) -> str:
    raw = ":".join(map(str, numbers)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> tuple[int, ...] | None:
    """Decode an opaque cursor made by this module; None when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        numbers = tuple(int(x) for x in raw.split(":"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if len(numbers) != parts or any(x < 0 for x in numbers):
        return None
    return numbers

"""A generated WeCom organisation: the contact book (``Org``) of one fake corp, its departments, members and
external contacts (records in orgmodel.py, generation in orgdata.py).

Every index the API needs (members per department, the list_id roster, userids ignoring case) is kept up to
date so that a page costs O(page), not O(organisation).

The JSON shapes follow the contact API pages: user/get https://developer.work.weixin.qq.com/document/path/90196,
department/list https://developer.work.weixin.qq.com/document/path/90208, user/list_id
https://developer.work.weixin.qq.com/document/path/96067, externalcontact/get
https://developer.work.weixin.qq.com/document/path/92114. The app's visible range (可见范围) and WeCom's
case-insensitive userids (``find_user``) follow https://developer.work.weixin.qq.com/document/path/90236.
"""

from __future__ import annotations

import threading
from bisect import bisect_left

from .orgdata import _COMPANIES, _TAGS, OrgGeneration
from .orgmodel import (
    SENSITIVE_USER_FIELDS,
    Department,
    ExternalContact,
    Follow,
    User,
    _encode_cursor,
    _stable_hex,
    decode_cursor,
    dept_user_json,
)

__all__ = [
    "SENSITIVE_USER_FIELDS", "Department", "ExternalContact", "Follow", "Org", "User", "dept_user_json",
]


_QR_BASE = "https://open.work.weixin.qq.com/wwopen/userQRCode?vcode=vc"


class Org(OrgGeneration):
    """The contact book of one fake corp. Mutate it only under ``lock`` (FakeWeCom does)."""

    def __init__(self, seed: int = 0, company: tuple[str, str] = _COMPANIES[0]):
        self.seed = seed
        self.lock = threading.RLock()
        self.departments: dict[int, Department] = {}
        self.users: dict[str, User] = {}
        # WeCom matches userids case-insensitively (ZhangSan and zhangsan are one member).
        self._users_lower: dict[str, User] = {}
        # The list_id roster: members in creation order, with their seq numbers for bisecting.
        self._roster: list[User] = []
        self._roster_seqs: list[int] = []
        self._next_seq = 1
        self._next_n = 0
        self.external_contacts: dict[str, ExternalContact] = {}
        self.tags = {"et" + _stable_hex("tag", seed, i, length=30): pair for i, pair in enumerate(_TAGS)}
        self.mail_domain = "example.com"
        self.biz_mail_domain = f"corp{seed}.wecom.work"
        # Pointed at the fake server once it listens, so nothing in a demo reaches a real CDN.
        self.avatar_base = "https://wework.qpic.cn/wwpic"
        root = Department(1, company[0], company[1], 0, 100000000, 1)
        self.departments[1] = root
        # The self-built app's visible range (可见范围): None is the whole corp.
        self._visible_departments: frozenset[int] | None = None
        self._visible_users: frozenset[str] = frozenset()

    # ---------------------------------------------------------------- indexes
    def _index_new_user(self, user: User) -> None:
        self.users[user.userid] = user
        self._users_lower[user.userid.lower()] = user
        self._roster.append(user)
        self._roster_seqs.append(user.seq)
        self._next_seq = user.seq + 1
        for dept_id in user.departments:
            self.departments[dept_id].members.append(user)

    def _set_leader(self, user: User, dept: Department, leader: bool) -> None:
        flags = list(user.leader_in)
        flags[user.departments.index(dept.id)] = 1 if leader else 0
        user.leader_in = tuple(flags)
        if leader and user not in dept.leaders:
            dept.leaders.append(user)
        elif not leader and user in dept.leaders:
            dept.leaders.remove(user)

    def _attach_follow(self, follow: Follow) -> None:
        user, contact = follow.user, follow.contact
        if user.follows is None:
            user.follows = []
        user.follows.append(follow)
        contact.followers.append(follow)
        self.external_contacts[contact.external_userid] = contact

    # ---------------------------------------------------------------- the app's visible range
    def set_visible_range(self, departments=(), users=()) -> None:
        """Set the self-built app's visible range (应用可见范围, set in the WeCom admin under the app's
        page): whole departments (each with its whole subtree) and single members, by object or id.
        With neither, the app sees the whole corp (the default).

        What the app's secret reads follows it: https://developer.work.weixin.qq.com/document/path/90196
        ("应用只能获取可见范围内的成员信息"), department/list
        https://developer.work.weixin.qq.com/document/path/90208, and the customer APIs
        https://developer.work.weixin.qq.com/document/path/92994 ("应用只能获取到可见范围内的成员")."""
        dept_ids = frozenset(int(getattr(d, "id", d)) for d in departments)
        userids = frozenset(str(getattr(u, "userid", u)) for u in users)
        if not dept_ids and not userids:
            self.clear_visible_range()
            return
        self._visible_departments = dept_ids
        self._visible_users = userids

    def clear_visible_range(self) -> None:
        """The app sees the whole corp again."""
        self._visible_departments = None
        self._visible_users = frozenset()

    @property
    def visible_range(self) -> dict | None:
        """The range as set (``{"departments": [...], "users": [...]}``), None for the whole corp."""
        if self._visible_departments is None:
            return None
        return {"departments": sorted(self._visible_departments), "users": sorted(self._visible_users)}

    def app_sees_department(self, dept) -> bool:
        """True when the department (object or id) is in the app's visible range: it, or a department
        above it, was put in the range."""
        visible = self._visible_departments
        if visible is None:
            return True
        dept_id = int(getattr(dept, "id", dept))
        departments = self.departments
        for _ in range(64):  # deeper than WeCom's 15 levels: a parent cycle cannot spin
            if dept_id in visible:
                return True
            node = departments.get(dept_id)
            if node is None or node.parentid == 0:
                return False
            dept_id = node.parentid
        return False

    def app_sees_user(self, user) -> bool:
        """True when the member (object or userid) is in the app's visible range: named in it, or in
        one of its departments (or below one)."""
        if self._visible_departments is None:
            return True
        if isinstance(user, str):
            found = self.users.get(user)
            if found is None:
                return user in self._visible_users
            user = found
        if user.userid in self._visible_users:
            return True
        return any(self.app_sees_department(d) for d in user.departments)

    # ---------------------------------------------------------------- queries
    def subtree(self, dept_id: int) -> list[Department]:
        """The department and all below it, parents before children (WeCom's recursive listing)."""
        out: list[Department] = []
        stack = [dept_id]
        departments = self.departments
        while stack:
            dept = departments[stack.pop()]
            out.append(dept)
            stack.extend(reversed(dept.children))
        return out

    def members_of(self, dept_id: int, recursive: bool = False) -> list[User]:
        """Members directly in the department, or in its whole subtree (each member once)."""
        if not recursive:
            return list(self.departments[dept_id].members)
        seen: set[int] = set()
        out: list[User] = []
        for dept in self.subtree(dept_id):
            for user in dept.members:
                if user.seq not in seen:
                    seen.add(user.seq)
                    out.append(user)
        return out

    def find_user(self, userid: str) -> User | None:
        """The member whose userid equals ``userid`` ignoring case, as WeCom looks members up."""
        user = self.users.get(userid)
        return user if user is not None else self._users_lower.get(userid.lower())

    def active_users(self) -> list[User]:
        return [u for u in self._roster if u.status == 1]

    def list_id_page(self, cursor: str, limit: int) -> tuple[list[tuple[str, int]], str] | None:
        """One user/list_id page: (userid, department) rows, one per membership, and the next cursor
        ("" at the end). None when the cursor is not valid."""
        if cursor:
            position = decode_cursor(cursor, 2)
            if position is None:
                return None
            seq, skip = position
        else:
            seq, skip = 0, 0
        rows: list[tuple[str, int]] = []
        roster = self._roster
        i = bisect_left(self._roster_seqs, seq)
        if i < len(roster) and roster[i].seq != seq:
            skip = 0  # the member the cursor pointed at left; resume with the next one
        while i < len(roster):
            user = roster[i]
            depts = user.departments
            for k in range(skip, len(depts)):
                if len(rows) == limit:
                    return rows, _encode_cursor(user.seq, k)
                rows.append((user.userid, depts[k]))
            skip = 0
            i += 1
        return rows, ""

    def follow_pairs_page(self, userids: list[str], cursor: str, limit: int):
        """One externalcontact/batch/get_by_user page over every (member, contact) relation of the given
        members, in the given order. Returns (follows, next_cursor) or None for a bad cursor."""
        if cursor:
            position = decode_cursor(cursor, 2)
            if position is None:
                return None
            i, j = position
        else:
            i, j = 0, 0
        out: list[Follow] = []
        while i < len(userids):
            user = self.users.get(userids[i])
            follows = (user.follows or []) if user is not None else []
            while j < len(follows):
                if len(out) == limit:
                    return out, _encode_cursor(i, j)
                out.append(follows[j])
                j += 1
            i += 1
            j = 0
        return out, ""

    # ---------------------------------------------------------------- JSON shapes
    def user_json(self, user: User, sensitive: bool = True) -> dict:
        """The member as user/get and user/list answer it."""
        data = {
            "userid": user.userid,
            "name": user.name,
            "department": list(user.departments),
            "order": [0] * len(user.departments),
            "position": user.position,
            "is_leader_in_dept": list(user.leader_in),
            "direct_leader": user.direct_leader,
            "status": user.status,
            "main_department": user.main_department,
            "alias": user.alias,
            "extattr": {"attrs": []},
        }
        if sensitive:
            avatar = user.avatar
            data.update(mobile=user.mobile, gender=user.gender, email=user.email, biz_mail=user.biz_mail,
                        avatar=avatar, thumb_avatar=avatar[:-2] + "/100" if avatar.endswith("/0") else avatar,
                        telephone=user.telephone,
                        address=user.address,
                        qr_code=f"{_QR_BASE}{_stable_hex(self.seed, user.n, length=16)}")
        return data

    @staticmethod
    def user_simple_json(user: User) -> dict:
        return {"userid": user.userid, "name": user.name, "department": list(user.departments),
                "open_userid": user.open_userid}

    @staticmethod
    def department_json(dept: Department) -> dict:
        return {"id": dept.id, "name": dept.name, "name_en": dept.name_en,
                "department_leader": [u.userid for u in dept.leaders], "parentid": dept.parentid,
                "order": dept.order}

    def contact_json(self, contact: ExternalContact) -> dict:
        data = {"external_userid": contact.external_userid, "name": contact.name, "type": contact.type,
                "avatar": f"{self.avatar_base}/ext{_stable_hex(self.seed, 'c', contact.n)}/0",
                "gender": contact.gender}
        if contact.type == 1:
            if contact.unionid:
                data["unionid"] = contact.unionid
        else:
            data.update(position=contact.position, corp_name=contact.corp_name,
                        corp_full_name=contact.corp_name + "有限公司")
        return data

    def follow_user_json(self, follow: Follow) -> dict:
        """A relation as externalcontact/get lists it under follow_user."""
        data = self._follow_common(follow)
        data["tags"] = [{"group_name": self.tags[t][0], "tag_name": self.tags[t][1], "tag_id": t, "type": 1}
                        for t in follow.tag_ids if t in self.tags]
        return data

    def follow_info_json(self, follow: Follow) -> dict:
        """A relation as batch/get_by_user gives it under follow_info."""
        data = self._follow_common(follow)
        data["tag_id"] = list(follow.tag_ids)
        return data

    @staticmethod
    def _follow_common(follow: Follow) -> dict:
        data = {"userid": follow.user.userid, "remark": follow.remark, "description": follow.description,
                "createtime": follow.createtime, "remark_mobiles": list(follow.remark_mobiles),
                "oper_userid": follow.user.userid, "add_way": follow.add_way}
        if follow.state:
            data["state"] = follow.state
        return data

    # ---------------------------------------------------------------- mutations (call under lock)
    def add_user(self, userid: str, name: str, departments: tuple[int, ...], position: str = "",
                 gender: str = "1", status: int = 1) -> User:
        user = User(self, self._next_n, self._next_seq, userid, name, departments, position, gender, status)
        self._next_n += 1
        self._index_new_user(user)
        return user

    def move_user(self, user: User, departments: tuple[int, ...]) -> None:
        for dept_id in user.departments:
            dept = self.departments.get(dept_id)
            if dept is not None and dept_id not in departments:
                dept.members.remove(user)
                if user in dept.leaders:
                    dept.leaders.remove(user)
        old = dict(zip(user.departments, user.leader_in, strict=True))
        for dept_id in departments:
            if dept_id not in user.departments:
                self.departments[dept_id].members.append(user)
        user.departments = departments
        user.leader_in = tuple(old.get(d, 0) for d in departments)
        if user.main_department not in departments:
            user.main_department = departments[0]

    def rename_user(self, user: User, new_userid: str) -> None:
        # The mailbox belongs to the person, not to the id: keep it when the id changes.
        for key in ("email", "biz_mail"):
            if user.extra is None or key not in user.extra:
                user.set_extra(key, getattr(user, key))
        del self.users[user.userid]
        self._users_lower.pop(user.userid.lower(), None)
        user.userid = new_userid
        self.users[new_userid] = user
        self._users_lower[new_userid.lower()] = user

    def remove_user(self, user: User) -> None:
        del self.users[user.userid]
        self._users_lower.pop(user.userid.lower(), None)
        i = bisect_left(self._roster_seqs, user.seq)
        del self._roster[i]
        del self._roster_seqs[i]
        for dept_id in user.departments:
            dept = self.departments[dept_id]
            dept.members.remove(user)
            if user in dept.leaders:
                dept.leaders.remove(user)
        for follow in user.follows or ():
            contact = follow.contact
            contact.followers.remove(follow)
            if not contact.followers:
                del self.external_contacts[contact.external_userid]
        user.follows = None

    def add_department(self, dept_id: int, name: str, name_en: str, parentid: int, order: int) -> Department:
        parent = self.departments[parentid]
        dept = Department(dept_id, name, name_en, parentid, order, parent.depth + 1)
        self.departments[dept_id] = dept
        parent.children.append(dept_id)
        self._sort_children(parent)
        return dept

    def move_department(self, dept: Department, parentid: int) -> None:
        self.departments[dept.parentid].children.remove(dept.id)
        parent = self.departments[parentid]
        parent.children.append(dept.id)
        self._sort_children(parent)
        dept.parentid = parentid
        for node in self.subtree(dept.id):
            node.depth = self.departments[node.parentid].depth + 1

    def remove_department(self, dept: Department) -> None:
        self.departments[dept.parentid].children.remove(dept.id)
        del self.departments[dept.id]

    def _sort_children(self, parent: Department) -> None:
        departments = self.departments
        parent.children.sort(key=lambda i: (-departments[i].order, i))

    def max_depth_below(self, dept_id: int) -> int:
        """How many levels the subtree rooted at dept_id spans (1 for a leaf)."""
        base = self.departments[dept_id].depth
        return max(d.depth for d in self.subtree(dept_id)) - base + 1

    def next_department_id(self) -> int:
        return max(self.departments) + 1

    def stats(self) -> dict:
        depths = [d.depth for d in self.departments.values()]
        return {"users": len(self.users), "departments": len(self.departments), "max_depth": max(depths),
                "external_contacts": len(self.external_contacts),
                "memberships": sum(len(u.departments) for u in self._roster)}

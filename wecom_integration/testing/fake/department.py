"""Departments (部门): department/list, department/simplelist and department/get, and the control methods that
change departments (add_department, update_department, delete_department), each pushing its change_contact
callback. WeCom's rules on changes: unique names among siblings (60008), at most 15 levels (81002), no
cycles (60010), only empty leaves deleted (60005/60006), the root never (60007).

* the 2022 rules (``restricted``): the contact-sync secret lists ids only (department/simplelist); its
  department/list and department/get answer 48009 (see user.py);
* the self-built app's visible range (可见范围): departments outside it are absent from lists and answer
  60011 on a direct read (department/list https://developer.work.weixin.qq.com/document/path/90208).

Pages:

* department/list https://developer.work.weixin.qq.com/document/path/90208
* department/simplelist https://developer.work.weixin.qq.com/document/path/95350
* department/get https://developer.work.weixin.qq.com/document/path/95351
* the department change callbacks https://developer.work.weixin.qq.com/document/path/90971
"""

from __future__ import annotations

from ..callbacks import DeliveryResult, build_contact_party_xml
from .base import _DIRECTORY, FakeWeComError, _ApiError, _Request, _Route

ROUTES = {
    "department/list": _Route("GET", _DIRECTORY, "_api_department_list"),
    "department/simplelist": _Route("GET", _DIRECTORY, "_api_department_simplelist"),
    "department/get": _Route("GET", _DIRECTORY, "_api_department_get"),
}


class DepartmentAPI:
    """Department reads and department changes.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    # ------------------------------------------------------------------ control: department changes (emit callbacks)
    def add_department(self, id: int | None = None, name: str = "", parentid: int = 1, order: int = 0,
                       name_en: str | None = None) -> list[DeliveryResult]:
        """Add a department and push create_party. https://developer.work.weixin.qq.com/document/path/90971"""
        org = self.org
        with org.lock:
            dept_id = org.next_department_id() if id is None else int(id)
            if dept_id in org.departments:
                raise FakeWeComError(60008)
            parent = org.departments.get(int(parentid))
            if parent is None:
                raise FakeWeComError(60004)
            self._check_department_name(name, parent.id)
            if parent.depth + 1 > 15:
                raise FakeWeComError(81002)
            dept = org.add_department(dept_id, name, name_en or "", parent.id, int(order))
            payload = {"id": dept.id, "name": dept.name, "parentid": dept.parentid, "order": dept.order}
        return self.emit("contacts", build_contact_party_xml(self.corp_id, "create_party", payload,
                                                             create_time=int(self.now())))

    def update_department(self, id: int, name: str | None = None, parentid: int | None = None,
                          order: int | None = None, name_en: str | None = None) -> list[DeliveryResult]:
        """Rename or move a department and push update_party with what changed. An order-only change
        is silent: update_party carries no Order."""
        org = self.org
        with org.lock:
            dept = org.departments.get(int(id))
            if dept is None:
                raise FakeWeComError(60003)
            payload: dict = {"id": dept.id}
            target_parent = dept.parentid if parentid is None else int(parentid)
            if target_parent != dept.parentid:
                if dept.id == 1:
                    raise FakeWeComError(40058, "the root department cannot move")
                if target_parent not in org.departments:
                    raise FakeWeComError(60004)
                if any(d.id == target_parent for d in org.subtree(dept.id)):
                    raise FakeWeComError(60010)
                if org.departments[target_parent].depth + org.max_depth_below(dept.id) > 15:
                    raise FakeWeComError(81002)
            if name is not None and name != dept.name:
                self._check_department_name(name, target_parent, exclude=dept.id)
            if target_parent != dept.parentid:
                org.move_department(dept, target_parent)
                payload["parentid"] = target_parent
            if name is not None and name != dept.name:
                dept.name = name
                payload["name"] = name
            if name_en is not None:
                dept.name_en = name_en
            if order is not None and int(order) != dept.order:
                dept.order = int(order)
                if dept.parentid:
                    org._sort_children(org.departments[dept.parentid])
        if len(payload) == 1:
            return []
        return self.emit("contacts", build_contact_party_xml(self.corp_id, "update_party", payload,
                                                             create_time=int(self.now())))

    def delete_department(self, id: int) -> list[DeliveryResult]:
        """Delete an empty leaf department and push delete_party (WeCom refuses others: 60005/60006)."""
        org = self.org
        with org.lock:
            dept = org.departments.get(int(id))
            if dept is None:
                raise FakeWeComError(60003)
            if dept.id == 1:
                raise FakeWeComError(60007)
            if dept.children:
                raise FakeWeComError(60006)
            if dept.members:
                raise FakeWeComError(60005)
            org.remove_department(dept)
        return self.emit("contacts", build_contact_party_xml(self.corp_id, "delete_party", {"id": dept.id},
                                                             create_time=int(self.now())))

    def _check_department_name(self, name: str, parentid: int, exclude: int | None = None) -> None:
        if not name or len(name) > 32 or any(c in name for c in '\\:*?"<>|'):
            raise FakeWeComError(60001)
        for child_id in self.org.departments[parentid].children:
            if child_id != exclude and self.org.departments[child_id].name == name:
                raise FakeWeComError(60008)

    # ------------------------------------------------------------------ API: departments
    def _department_param(self, request: _Request, name: str, default: int | None) -> int:
        raw = request.param(name)
        if raw in (None, ""):
            if default is None:
                raise _ApiError(60003)
            return default
        try:
            dept_id = int(raw)
        except ValueError:
            raise _ApiError(60003) from None
        if dept_id not in self.org.departments:
            raise _ApiError(60003)
        return dept_id

    def _forbid_contact_details(self, request: _Request) -> None:
        """The 2022 rule: the contact-sync secret reads ids only; any read of details answers 48009."""
        if self.restricted and request.kind == "contacts":
            raise _ApiError(48009)

    def _visible_subtree(self, request: _Request, root: int) -> list:
        """The departments under ``root`` the caller may see: all for the contact secret, those in the
        app's visible range for the app secret (60011 when ``root`` was asked for and is outside)."""
        org = self.org
        if request.kind != "app":
            return org.subtree(root)
        if request.param("id") not in (None, "") and not org.app_sees_department(root):
            raise _ApiError(60011)
        return [d for d in org.subtree(root) if org.app_sees_department(d)]

    def _api_department_list(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90208"""
        self._forbid_contact_details(request)
        org = self.org
        with org.lock:
            root = self._department_param(request, "id", 1)
            return {"department": [org.department_json(d) for d in self._visible_subtree(request, root)]}

    def _api_department_simplelist(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/95350"""
        org = self.org
        with org.lock:
            root = self._department_param(request, "id", 1)
            return {"department_id": [{"id": d.id, "parentid": d.parentid, "order": d.order}
                                      for d in self._visible_subtree(request, root)]}

    def _api_department_get(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/95351"""
        self._forbid_contact_details(request)
        org = self.org
        with org.lock:
            dept_id = self._department_param(request, "id", None)
            if request.kind == "app" and not org.app_sees_department(dept_id):
                raise _ApiError(60011)
            return {"department": org.department_json(org.departments[dept_id])}

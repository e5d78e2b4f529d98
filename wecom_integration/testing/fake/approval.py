"""Approvals (审批, the OA API): templates with their controls, submitting with WeCom's validation, the
approval process step by step, listing and reading approvals, and the sys_approval_change callback each
change pushes to the app's URL.

Pages:

* oa/gettemplatedetail https://developer.work.weixin.qq.com/document/path/91982
* oa/applyevent https://developer.work.weixin.qq.com/document/path/91853
* oa/getapprovalinfo https://developer.work.weixin.qq.com/document/path/91816 (≤ 31 days, ≤ 100 a page)
* oa/getapprovaldetail https://developer.work.weixin.qq.com/document/path/91983
* the sys_approval_change callback https://developer.work.weixin.qq.com/document/path/91815

The OA API answers its own errcode for a request that does not fit (an unknown template, a missing
required control, a value of the wrong shape, an unknown applicant or approver, a bad time range or page
size): 301025, as WeCom's OA error table and the SDKs' users report it. Stricter than WeCom rather than
more lenient: every control's value is checked against its type.

Control methods act as people would in the WeCom app: ``approve_approval`` / ``reject_approval`` as the
approver of the current step, ``revoke_approval`` as the applicant, ``comment_approval`` as anyone.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import time
from xml.sax.saxutils import escape

from ..callbacks import DeliveryResult
from .base import _ApiError, _is_int_between, _Request, _Route

_OA = frozenset({"app", "approvals"})

ROUTES = {
    "oa/gettemplatedetail": _Route("POST", _OA, "_api_oa_template"),
    "oa/applyevent": _Route("POST", _OA, "_api_oa_apply"),
    "oa/getapprovalinfo": _Route("POST", _OA, "_api_oa_list"),
    "oa/getapprovaldetail": _Route("POST", _OA, "_api_oa_detail"),
}

#: The OA API's "invalid parameter" (请求参数错误).
OA_INVALID = 301025
MAX_RANGE = 31 * 86400
MAX_PAGE = 100
CONTROL_TYPES = {"Text", "Textarea", "Number", "Money", "Date", "Selector", "File", "Contact", "Tips"}
FINAL = {2, 3, 4, 6, 7, 10}


def control(kind: str, cid: str, title: str, require: int = 0, **config) -> dict:
    """One control of a template as gettemplatedetail answers it."""
    return {"property": {"control": kind, "id": cid, "title": [{"text": title, "lang": "zh_CN"}],
                         "placeholder": [], "require": require, "un_print": 0}, "config": config}


#: The templates every fake corp starts with: a leave request, and a joining request (one required text).
LEAVE_TEMPLATE_ID = "C4NyVwvTsSLsPNxKT7ZhjQsZmTKQ3SHnz9gxaY4cH"
JOIN_TEMPLATE_ID = "3Tka1eD6v6JfzhDMqPd3aMkFdxqtJMc2ZRioeFXkaaa"


def default_templates() -> dict[str, dict]:
    leave = [
        control("Text", "Text-1", "事由", 1),
        control("Number", "Number-1", "天数", 1),
        control("Date", "Date-1", "开始日期", 0, date={"type": "day"}),
        control("Selector", "Selector-1", "类型", 0, selector={"type": "single", "options": [
            {"key": "option-annual", "value": [{"text": "年假", "lang": "zh_CN"}]},
            {"key": "option-sick", "value": [{"text": "病假", "lang": "zh_CN"}]},
        ]}),
        control("File", "File-1", "附件", 0),
    ]
    join = [control("Textarea", "Textarea-1", "申请说明", 1)]
    return {
        LEAVE_TEMPLATE_ID: {"names": "请假", "controls": leave},
        JOIN_TEMPLATE_ID: {"names": "加入申请", "controls": join},
    }


class ApprovalAPI:
    """The OA approvals of the corp. A mixin of FakeWeCom (core.py): state lives on FakeWeCom."""

    # ------------------------------------------------------------------ state
    def _oa(self) -> dict:
        state = getattr(self, "_oa_state", None)
        if state is None:
            state = self._oa_state = {"templates": default_templates(), "approvals": {}, "seq": itertools.count(1)}
        return state

    @property
    def approval_templates(self) -> dict[str, dict]:
        return self._oa()["templates"]

    @property
    def approvals(self) -> dict[str, dict]:
        return self._oa()["approvals"]

    # ------------------------------------------------------------------ control: templates
    def add_approval_template(self, name: str, controls: list[dict], template_id: str | None = None) -> str:
        """A template the corp's admin made in the 审批 app; returns its id."""
        template_id = template_id or secrets.token_urlsafe(30)[:40]
        for item in controls:
            if item["property"]["control"] not in CONTROL_TYPES:
                raise ValueError(f"unknown control type {item['property']['control']!r}")
        with self._lock:
            self.approval_templates[template_id] = {"names": name, "controls": copy.deepcopy(controls)}
        return template_id

    def change_approval_template(self, template_id: str, controls: list[dict]) -> None:
        """The admin edited the template's controls (approvals already submitted keep their contents)."""
        with self._lock:
            self.approval_templates[template_id]["controls"] = copy.deepcopy(controls)

    # ------------------------------------------------------------------ API
    def _api_oa_template(self, request: _Request) -> dict:
        template_id = request.json().get("template_id")
        with self._lock:
            template = self.approval_templates.get(template_id) if isinstance(template_id, str) else None
            if template is None:
                raise _ApiError(OA_INVALID)
            return {"template_names": [{"text": template["names"], "lang": "zh_CN"}],
                    "template_content": {"controls": copy.deepcopy(template["controls"])}}

    def _api_oa_apply(self, request: _Request) -> dict:
        body = request.json()
        creator = body.get("creator_userid")
        template_id = body.get("template_id")
        with self._lock:
            template = self.approval_templates.get(template_id) if isinstance(template_id, str) else None
            if template is None:
                raise _ApiError(OA_INVALID)
            if not isinstance(creator, str) or creator not in self.org.users:
                raise _ApiError(OA_INVALID)
            contents = _checked_contents(template["controls"], (body.get("apply_data") or {}).get("contents"))
            steps = self._oa_steps(body)
            notifyers = body.get("notifyer") or []
            if not isinstance(notifyers, list) or any(n not in self.org.users for n in notifyers):
                raise _ApiError(OA_INVALID)
            now = int(self.now())
            day = time.strftime("%Y%m%d", time.gmtime(now + 8 * 3600))
            sp_no = f"{day}{next(self._oa()['seq']):06d}"
            user = self.org.users[creator]
            approval = {
                "sp_no": sp_no, "sp_name": template["names"], "sp_status": 1, "template_id": template_id,
                "apply_time": now, "applyer": {"userid": creator, "partyid": str(user.main_department)},
                "sp_record": steps, "notifyer": [{"userid": n} for n in notifyers],
                "apply_data": {"contents": contents}, "comments": [],
            }
            self.approvals[sp_no] = approval
        self._oa_push(sp_no, 1)
        return {"sp_no": sp_no}

    def _oa_steps(self, body: dict) -> list[dict]:
        if body.get("use_template_approver") == 1:
            # The template's own process: one step, decided by the corp's first member (the fake's choice).
            first = next(iter(self.org.users))
            approvers = [{"attr": 1, "userid": [first]}]
        else:
            approvers = body.get("approver")
        if not isinstance(approvers, list) or not approvers:
            raise _ApiError(OA_INVALID)
        steps = []
        for node in approvers:
            userids = node.get("userid") if isinstance(node, dict) else None
            if node.get("attr") not in (1, 2) or not isinstance(userids, list) or not userids:
                raise _ApiError(OA_INVALID)
            if any(not isinstance(u, str) or u not in self.org.users for u in userids):
                raise _ApiError(OA_INVALID)
            steps.append({"sp_status": 1, "approverattr": node["attr"], "details": [
                {"approver": {"userid": u}, "speech": "", "sp_status": 1, "sptime": 0, "media_id": []}
                for u in userids
            ]})
        return steps

    def _api_oa_list(self, request: _Request) -> dict:
        body = request.json()
        try:
            start, end = int(body.get("starttime")), int(body.get("endtime"))
        except (TypeError, ValueError):
            raise _ApiError(OA_INVALID) from None
        size = body.get("size", MAX_PAGE)
        if not 0 <= end - start <= MAX_RANGE or not _is_int_between(size, 1, MAX_PAGE):
            raise _ApiError(OA_INVALID)
        cursor = body.get("new_cursor") or ""
        with self._lock:
            numbers = sorted(sp for sp, a in self.approvals.items() if start <= a["apply_time"] <= end)
        offset = int(cursor) if cursor.isdigit() else 0
        page = numbers[offset:offset + size]
        following = offset + size
        return {"sp_no_list": page, "new_next_cursor": str(following) if following < len(numbers) else ""}

    def _api_oa_detail(self, request: _Request) -> dict:
        sp_no = request.json().get("sp_no")
        with self._lock:
            approval = self.approvals.get(str(sp_no)) if sp_no is not None else None
            if approval is None:
                raise _ApiError(OA_INVALID)
            return {"info": copy.deepcopy(approval)}

    # ------------------------------------------------------------------ control: people deciding
    def approve_approval(self, sp_no: str, approver: str, speech: str = "", *, push: bool = True):
        return self._oa_decide(sp_no, approver, 2, speech, push)

    def reject_approval(self, sp_no: str, approver: str, speech: str = "", *, push: bool = True):
        return self._oa_decide(sp_no, approver, 3, speech, push)

    def revoke_approval(self, sp_no: str, *, push: bool = True) -> list[DeliveryResult]:
        """The applicant withdraws it: 已撤销 while in approval, 通过后撤销 once approved."""
        with self._lock:
            approval = self.approvals[sp_no]
            if approval["sp_status"] == 1:
                approval["sp_status"], change = 4, 6
            elif approval["sp_status"] == 2:
                approval["sp_status"], change = 6, 8
            else:
                raise ValueError(f"approval {sp_no} is {approval['sp_status']}: nothing to revoke")
        return self._oa_push(sp_no, change) if push else []

    def comment_approval(self, sp_no: str, userid: str, text: str, *, push: bool = True):
        with self._lock:
            approval = self.approvals[sp_no]
            now = int(self.now())
            approval["comments"].append({"commentUserInfo": {"userid": userid}, "commenttime": now,
                                         "commentcontent": text, "commentid": secrets.token_hex(8)})
        return self._oa_push(sp_no, 10) if push else []

    def _oa_decide(self, sp_no, approver, decision, speech, push):
        with self._lock:
            approval = self.approvals[sp_no]
            if approval["sp_status"] != 1:
                raise ValueError(f"approval {sp_no} is no longer in approval")
            step = next(s for s in approval["sp_record"] if s["sp_status"] == 1)
            detail = next((d for d in step["details"] if d["approver"]["userid"] == approver), None)
            if detail is None or detail["sp_status"] != 1:
                raise ValueError(f"{approver} does not decide the current step of {sp_no}")
            now = int(self.now())
            detail.update(sp_status=decision, speech=speech, sptime=now)
            if decision == 3:
                step["sp_status"] = approval["sp_status"] = 3
                for other in step["details"]:
                    if other["sp_status"] == 1:
                        other["sp_status"] = 7 if step["approverattr"] == 1 else 1
            elif step["approverattr"] == 1 or all(d["sp_status"] == 2 for d in step["details"]):
                step["sp_status"] = 2
                for other in step["details"]:
                    if other["sp_status"] == 1:
                        other["sp_status"] = 7  # or-sign: decided by another
                if all(s["sp_status"] == 2 for s in approval["sp_record"]):
                    approval["sp_status"] = 2
        return self._oa_push(sp_no, decision) if push else []

    # ------------------------------------------------------------------ the callback
    def approval_change_xml(self, sp_no: str, change: int, create_time: int | None = None) -> str:
        with self._lock:
            approval = copy.deepcopy(self.approvals[sp_no])
        return build_approval_xml(self.corp_id, self.agent_id, approval, change,
                                  int(self.now()) if create_time is None else create_time)

    def _oa_push(self, sp_no: str, change: int) -> list[DeliveryResult]:
        return self.emit("app", self.approval_change_xml(sp_no, change))


def _checked_contents(controls: list[dict], contents) -> list[dict]:
    """apply_data.contents checked against the template: known ids, each value of its control's shape,
    every required control filled."""
    if not isinstance(contents, list):
        raise _ApiError(OA_INVALID)
    by_id = {c["property"]["id"]: c for c in controls}
    seen = {}
    for item in contents:
        cid = item.get("id") if isinstance(item, dict) else None
        spec = by_id.get(cid)
        if spec is None or item.get("control") != spec["property"]["control"]:
            raise _ApiError(OA_INVALID)
        if not _value_ok(spec, item.get("value")):
            raise _ApiError(OA_INVALID)
        seen[cid] = item
    for cid, spec in by_id.items():
        if spec["property"].get("require") and cid not in seen:
            raise _ApiError(OA_INVALID)
    return copy.deepcopy(contents)


def _value_ok(spec: dict, value) -> bool:
    kind = spec["property"]["control"]
    if not isinstance(value, dict):
        return False
    if kind in ("Text", "Textarea"):
        return isinstance(value.get("text"), str) and value["text"] != ""
    if kind == "Number":
        return _decimal(value.get("new_number"))
    if kind == "Money":
        return _decimal(value.get("new_money"))
    if kind == "Date":
        date = value.get("date")
        return isinstance(date, dict) and date.get("type") in ("day", "hour") and str(
            date.get("s_timestamp", "")).isdigit()
    if kind == "Selector":
        selector = value.get("selector")
        keys = {o["key"] for o in spec["config"].get("selector", {}).get("options", [])}
        options = selector.get("options") if isinstance(selector, dict) else None
        return isinstance(options, list) and bool(options) and all(
            isinstance(o, dict) and o.get("key") in keys for o in options)
    if kind == "File":
        files = value.get("files")
        return isinstance(files, list) and all(isinstance(f, dict) and f.get("file_id") for f in files)
    if kind == "Contact":
        return isinstance(value.get("members"), list)
    return False


def _decimal(text) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return text not in (None, "")


def build_approval_xml(corp_id: str, agent_id: int, approval: dict, change: int, create_time: int) -> str:
    """The sys_approval_change callback for ``approval`` (getapprovaldetail's ``info``) as WeCom sends it."""

    def t(tag: str, value) -> str:
        return f"<{tag}>{escape(str(value))}</{tag}>"

    def user(tag: str, userid: str) -> str:
        return f"<{tag}>{t('UserId', userid)}</{tag}>"

    records = "".join(
        "<SpRecord>" + t("SpStatus", step["sp_status"]) + t("ApproverAttr", step["approverattr"])
        + "".join(
            "<Details>" + user("Approver", d["approver"]["userid"]) + t("Speech", d["speech"])
            + t("SpStatus", d["sp_status"]) + t("SpTime", d["sptime"]) + "</Details>"
            for d in step["details"]
        )
        + "</SpRecord>"
        for step in approval["sp_record"]
    )
    notifyers = "".join(user("Notifyer", n["userid"]) for n in approval["notifyer"])
    comments = "".join(
        "<Comments>" + user("CommentUserInfo", c["commentUserInfo"]["userid"]) + t("CommentTime", c["commenttime"])
        + t("CommentContent", c["commentcontent"]) + t("CommentId", c["commentid"]) + "</Comments>"
        for c in approval["comments"]
    )
    applyer = "<Applyer>" + t("UserId", approval["applyer"]["userid"]) + t("Party", approval["applyer"]["partyid"])
    return (
        "<xml>" + t("ToUserName", corp_id) + t("FromUserName", "sys") + t("CreateTime", create_time)
        + t("MsgType", "event") + t("Event", "sys_approval_change") + t("AgentID", agent_id) + "<ApprovalInfo>"
        + t("SpNo", approval["sp_no"]) + t("SpName", approval["sp_name"]) + t("SpStatus", approval["sp_status"])
        + t("TemplateId", approval["template_id"]) + t("ApplyTime", approval["apply_time"]) + applyer
        + "</Applyer>" + records + notifyers + comments + t("StatuChangeEvent", change) + "</ApprovalInfo></xml>"
    )


# The WeCom app's approval screen, as a page of the fake (the demo's stand-in for a phone) ----------------

_STATUS = {1: "审批中", 2: "已通过", 3: "已驳回", 4: "已撤销", 6: "通过后撤销", 7: "已删除", 10: "已支付"}
_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>企业微信 · 审批 (fake)</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.8em 1em;margin:.8em 0}}.muted{{color:#777}}
button{{margin-right:.4em}}input[type=text]{{width:14em}}</style></head><body>
<h1>企业微信 · 审批 <small class="muted">(fake WeCom: act as the approver)</small></h1>{body}</body></html>"""


class ApprovalScreen:
    """``GET /fake/app/approvals``: every approval, and for one in approval, its current step's approvers
    each with 同意 / 驳回 buttons, plus 撤销 for the applicant; ``POST /fake/app/approvals/<sp_no>`` acts
    (form fields ``action``, ``userid``, ``speech``), pushes the callback as the WeCom app would, and shows
    the page again."""

    def _approval_screen(self, method: str, parts: list[str], body: bytes):
        from urllib.parse import parse_qs

        if method == "POST" and len(parts) == 3:
            form = {key: values[0] for key, values in parse_qs(body.decode("utf-8")).items()}
            sp_no, action, who = parts[2], form.get("action"), form.get("userid", "")
            if action == "approve":
                self.approve_approval(sp_no, who, form.get("speech", ""))
            elif action == "reject":
                self.reject_approval(sp_no, who, form.get("speech", ""))
            elif action == "revoke":
                self.revoke_approval(sp_no)
            else:
                raise ValueError("action is approve, reject or revoke")
        with self._lock:
            approvals = [copy.deepcopy(a) for a in sorted(self.approvals.values(), key=lambda a: a["sp_no"],
                                                          reverse=True)]
        cards = [self._approval_card(approval) for approval in approvals] or ["<p>还没有审批。</p>"]
        return 200, _PAGE.format(body="".join(cards)).encode("utf-8"), "text/html; charset=utf-8"

    def _approval_card(self, approval: dict) -> str:
        sp_no = escape(approval["sp_no"])
        names = {userid: user.name for userid, user in self.org.users.items()}
        applicant = approval["applyer"]["userid"]
        lines = [f"<div class='card' id='sp-{sp_no}'><b>{escape(approval['sp_name'])}</b> {sp_no} · "
                 f"<span class='status'>{_STATUS.get(approval['sp_status'], approval['sp_status'])}</span>"
                 f"<div class='muted'>申请人 {escape(names.get(applicant, applicant))} ({escape(applicant)})</div>"]
        current = next((s for s in approval["sp_record"] if s["sp_status"] == 1), None)
        if approval["sp_status"] == 1 and current is not None:
            for detail in current["details"]:
                if detail["sp_status"] != 1:
                    continue
                who = detail["approver"]["userid"]
                lines.append(
                    f"<form method='post' action='/fake/app/approvals/{sp_no}'>"
                    f"<input type='hidden' name='userid' value='{escape(who)}'>"
                    f"{escape(names.get(who, who))} ({escape(who)}): <input type='text' name='speech' "
                    f"placeholder='审批意见'> <button name='action' value='approve'>同意</button>"
                    f"<button name='action' value='reject'>驳回</button></form>"
                )
        if approval["sp_status"] in (1, 2):
            lines.append(f"<form method='post' action='/fake/app/approvals/{sp_no}'><input type='hidden' "
                         f"name='action' value='revoke'><button>撤销 (as the applicant)</button></form>")
        lines.append("</div>")
        return "".join(lines)

"""Approvals (审批, WeCom's OA API): a template's controls, submitting an approval, listing approval numbers
and reading one approval.

* oa/gettemplatedetail https://developer.work.weixin.qq.com/document/path/91982
* oa/applyevent https://developer.work.weixin.qq.com/document/path/91853
* oa/getapprovalinfo https://developer.work.weixin.qq.com/document/path/91816
* oa/getapprovaldetail https://developer.work.weixin.qq.com/document/path/91983
* the sys_approval_change callback https://developer.work.weixin.qq.com/document/path/91815

Called with the app's secret (an app given approval rights) or the dedicated approval secret (审批应用
Secret), whichever the tenant configured (``secret_for(config, "approvals")``).
"""

from __future__ import annotations

from collections.abc import Iterator

from wecom_integration.client.base import BaseAPI

#: oa/getapprovalinfo covers at most 31 days per call (doc 91816).
MAX_RANGE_SECONDS = 31 * 86400
#: ... and answers at most 100 approval numbers per page.
MAX_PAGE_SIZE = 100


class ApprovalAPI(BaseAPI):
    def get_template_detail(self, template_id: str) -> dict:
        """The template's names and controls: ``{template_names, template_content: {controls: [...]}}``.
        https://developer.work.weixin.qq.com/document/path/91982"""
        answer = self._post("oa/gettemplatedetail", {"template_id": template_id})
        return {key: answer[key] for key in ("template_names", "template_content") if key in answer}

    def apply(self, *, creator_userid: str, template_id: str, contents: list[dict], approvers=None,
              notifyers=None, notify_type: int = 1, summary=None) -> str:
        """Submit an approval as ``creator_userid``; returns its number (sp_no).

        ``approvers`` is WeCom's ``approver`` list (``[{attr: 1 or-sign | 2 all-sign, userid: [...]}]``);
        None uses the template's own approval process (``use_template_approver=1``).
        https://developer.work.weixin.qq.com/document/path/91853
        """
        body = {
            "creator_userid": creator_userid,
            "template_id": template_id,
            "use_template_approver": 0 if approvers else 1,
            "apply_data": {"contents": list(contents)},
            "summary_list": [
                {"summary_info": [{"text": line, "lang": "zh_CN"}]} for line in (summary or [])
            ],
        }
        if approvers:
            body["approver"] = list(approvers)
        if notifyers:
            body["notifyer"] = list(notifyers)
            body["notify_type"] = notify_type
        # Not resent after a lost answer: WeCom may have created the approval already.
        return self._post("oa/applyevent", body, idempotent=False)["sp_no"]

    def get_sp_nos(self, starttime: int, endtime: int, cursor: str = "", size: int = MAX_PAGE_SIZE,
                   filters=None) -> dict:
        """One page of approval numbers submitted in [starttime, endtime] (at most 31 days apart):
        ``{sp_no_list, new_next_cursor}``. https://developer.work.weixin.qq.com/document/path/91816"""
        if not 0 <= endtime - starttime <= MAX_RANGE_SECONDS:
            raise ValueError("oa/getapprovalinfo covers 0 to 31 days per call")
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(f"size must be between 1 and {MAX_PAGE_SIZE}")
        body = {"starttime": str(starttime), "endtime": str(endtime), "new_cursor": cursor, "size": size}
        if filters:
            body["filters"] = list(filters)
        return self._post("oa/getapprovalinfo", body)

    def iter_sp_nos(self, starttime: int, endtime: int, filters=None) -> Iterator[str]:
        """Every approval number submitted in [starttime, endtime], any length of time: asked 31 days at a
        time, each range across all its pages."""
        start = starttime
        while start <= endtime:
            end = min(start + MAX_RANGE_SECONDS, endtime)
            cursor = ""
            while True:
                page = self.get_sp_nos(start, end, cursor, MAX_PAGE_SIZE, filters)
                yield from page.get("sp_no_list") or []
                cursor = page.get("new_next_cursor") or ""
                if not cursor:
                    break
            if end >= endtime:
                break
            start = end + 1

    def get_detail(self, sp_no: str) -> dict:
        """One approval: ``info`` with its status, applicant, every step's decisions, notifyers, contents
        and comments. https://developer.work.weixin.qq.com/document/path/91983"""
        return self._post("oa/getapprovaldetail", {"sp_no": str(sp_no)})["info"]

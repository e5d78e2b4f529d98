"""Keeping the approvals' mirror: WeCom's two descriptions of an approval (the ``sys_approval_change``
callback's ``<ApprovalInfo>`` and ``oa/getapprovaldetail``'s ``info``) read into one shape and applied
so that the latest wins, whatever order they arrive in and however often.

WeCom delivers approval callbacks late, twice, or not at all (doc 91815 asks apps to reconcile with
``getapprovaldetail``). Each description gets a version: the latest of the approval's own times (the
submission, every decision, every comment), then how final its status is (a revocation after approval
outranks the approval it revokes; a deletion outranks everything), then when it was observed (the
callback's CreateTime, the time of the fetch). A description whose version is not newer than the
row's changes nothing, so a repeated or out-of-order delivery is a no-op and a change is recorded once.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from wecom_integration.approvals.models import Approval

# How final each status is: in approval < decided < undone after approval < deleted.
_RANK = {1: 0, 2: 1, 3: 1, 4: 1, 10: 2, 6: 2, 7: 3}


def as_list(value: Any) -> list:
    """A repeated XML tag is a list, a single one a dict, an absent one None: always a list here."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _userid(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("UserId") or value.get("userid") or "")
    return str(value or "")


@dataclass(frozen=True)
class Description:
    """An approval as one of WeCom's two descriptions gives it. ``contents`` is None when the
    description does not carry them (the callback never does)."""

    sp_no: str
    sp_name: str
    template_id: str
    applicant: str
    applicant_party: str
    status: int
    apply_time: int
    records: list[dict]
    notifyers: list[str]
    comments: list[dict]
    contents: list[dict] | None

    def own_time(self) -> int:
        times = [self.apply_time]
        times += [detail["time"] for record in self.records for detail in record["details"]]
        times += [comment["time"] for comment in self.comments]
        return max(times)

    def version(self, observed: int) -> list[int]:
        return [self.own_time(), _RANK.get(self.status, 0), int(observed)]


def from_callback(info: dict) -> Description:
    """``<ApprovalInfo>`` of a ``sys_approval_change`` callback (as events.ApprovalChangeEvent.info)."""
    records = [
        {
            "status": _int(record.get("SpStatus")),
            "approver_attr": _int(record.get("ApproverAttr"), 1),
            "details": [
                {
                    "approver": _userid(detail.get("Approver")),
                    "speech": str(detail.get("Speech") or ""),
                    "status": _int(detail.get("SpStatus")),
                    "time": _int(detail.get("SpTime")),
                }
                for detail in as_list(record.get("Details"))
            ],
        }
        for record in as_list(info.get("SpRecord"))
    ]
    comments = [
        {
            "userid": _userid(comment.get("CommentUserInfo")),
            "time": _int(comment.get("CommentTime")),
            "content": str(comment.get("CommentContent") or ""),
            "id": str(comment.get("CommentId") or ""),
        }
        for comment in as_list(info.get("Comments"))
    ]
    applyer = info.get("Applyer") if isinstance(info.get("Applyer"), dict) else {}
    return Description(
        sp_no=str(info.get("SpNo") or ""),
        sp_name=str(info.get("SpName") or ""),
        template_id=str(info.get("TemplateId") or ""),
        applicant=_userid(applyer),
        applicant_party=str(applyer.get("Party") or ""),
        status=_int(info.get("SpStatus"), 1),
        apply_time=_int(info.get("ApplyTime")),
        records=records,
        notifyers=[_userid(item) for item in as_list(info.get("Notifyer")) if _userid(item)],
        comments=comments,
        contents=None,
    )


def from_detail(info: dict) -> Description:
    """``info`` of ``oa/getapprovaldetail`` (doc 91983's JSON)."""
    records = [
        {
            "status": _int(record.get("sp_status")),
            "approver_attr": _int(record.get("approverattr"), 1),
            "details": [
                {
                    "approver": _userid(detail.get("approver")),
                    "speech": str(detail.get("speech") or ""),
                    "status": _int(detail.get("sp_status")),
                    "time": _int(detail.get("sptime")),
                }
                for detail in as_list(record.get("details"))
            ],
        }
        for record in as_list(info.get("sp_record"))
    ]
    comments = [
        {
            "userid": _userid(comment.get("commentUserInfo") or comment.get("comment_user_info")),
            "time": _int(comment.get("commenttime")),
            "content": str(comment.get("commentcontent") or ""),
            "id": str(comment.get("commentid") or ""),
        }
        for comment in as_list(info.get("comments"))
    ]
    applyer = info.get("applyer") or {}
    apply_data = info.get("apply_data") or {}
    return Description(
        sp_no=str(info.get("sp_no") or ""),
        sp_name=str(info.get("sp_name") or ""),
        template_id=str(info.get("template_id") or ""),
        applicant=_userid(applyer),
        applicant_party=str(applyer.get("partyid") or ""),
        status=_int(info.get("sp_status"), 1),
        apply_time=_int(info.get("apply_time")),
        records=records,
        notifyers=[_userid(item) for item in as_list(info.get("notifyer")) if _userid(item)],
        comments=comments,
        contents=list(apply_data.get("contents") or []),
    )


@dataclass(frozen=True)
class Applied:
    approval: Approval
    changed: bool
    previous_status: int | None  # None: the approval was new to the mirror


def _when(seconds: int) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC) if seconds else None


def apply(tenant_id: int, description: Description, *, observed: int | None = None) -> Applied:
    """Write ``description`` into the mirror unless the row already holds one at least as new.

    Runs in its own transaction (a savepoint inside the caller's) with the row locked, so two workers
    applying two descriptions of one approval end with the newer one, whichever commits first.
    """
    if not description.sp_no:
        raise ValueError("an approval description without SpNo")
    observed = int(time.time()) if observed is None else observed
    version = description.version(observed)
    with transaction.atomic():
        approval, created = Approval.objects.select_for_update().get_or_create(
            tenant_id=tenant_id, sp_no=description.sp_no, defaults={"version": []}
        )
        if not created and approval.version and list(approval.version) >= version:
            # Older or the same: a repeat or a late delivery. Contents a callback lacks may still come.
            if description.contents is not None and not approval.contents:
                approval.contents = description.contents
                approval.save(update_fields=["contents", "updated_at"])
            return Applied(approval, False, approval.status)
        previous = None if created else approval.status
        if not created and _same_state(approval, description):
            # The same state observed again (WeCom's second delivery, a fetch after the callback): keep
            # the newer version so an older description cannot win later, and record no change.
            approval.version = version
            fields = ["version", "updated_at"]
            if description.contents is not None and not approval.contents:
                approval.contents = description.contents
                fields.append("contents")
            approval.save(update_fields=fields)
            return Applied(approval, False, previous)
        approval.sp_name = description.sp_name or approval.sp_name
        approval.template_id = description.template_id or approval.template_id
        approval.applicant = description.applicant or approval.applicant
        approval.applicant_party = description.applicant_party or approval.applicant_party
        approval.status = description.status
        approval.apply_time = _when(description.apply_time) or approval.apply_time
        approval.records = description.records
        approval.notifyers = description.notifyers
        approval.comments = description.comments
        if description.contents is not None:
            approval.contents = description.contents
        approval.version = version
        approval.save()
        return Applied(approval, True, previous)


def _same_state(approval: Approval, description: Description) -> bool:
    return (
        approval.status == description.status
        and approval.records == description.records
        and approval.comments == description.comments
        and approval.notifyers == description.notifyers
    )


def decided_by(approval: Approval) -> list[str]:
    """The approvers whose decision made the approval's status (the latest step's deciders)."""
    status = approval.status
    wanted = {2: 2, 3: 3}.get(status)
    deciders = []
    for record in approval.records:
        for detail in record.get("details", []):
            if wanted is not None and detail.get("status") == wanted and detail.get("approver"):
                deciders.append(detail["approver"])
    return deciders


def timeline(approval: Approval) -> list[dict]:
    """The approval's history in time order, for the admin's detail page: the submission, every
    decision taken (an approver still to decide is listed at the end as waiting), every comment."""
    entries = []
    if approval.apply_time:
        entries.append({"time": approval.apply_time, "who": approval.applicant, "what": "submitted", "text": ""})
    waiting = []
    for step, record in enumerate(approval.records, start=1):
        for detail in record.get("details", []):
            item = {
                "step": step,
                "who": detail.get("approver", ""),
                "status": detail.get("status", 1),
                "text": detail.get("speech", ""),
                "attr": record.get("approver_attr", 1),
            }
            if detail.get("time"):
                entries.append({**item, "time": _when(detail["time"]), "what": "decided"})
            else:
                waiting.append({**item, "time": None, "what": "waiting"})
    for comment in approval.comments:
        entries.append(
            {"time": _when(comment.get("time", 0)), "who": comment.get("userid", ""), "what": "comment",
             "text": comment.get("content", "")}
        )
    entries.sort(key=lambda entry: entry["time"] or dt.datetime.max.replace(tzinfo=dt.UTC))
    return entries + waiting

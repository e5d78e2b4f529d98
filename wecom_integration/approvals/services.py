"""Approvals through WeCom's OA API: the tenant's templates, submitting an approval checked against its
template, and reconciling the mirror with ``getapprovalinfo`` + ``getapprovaldetail``.

Templates are fetched on demand and cached (``TEMPLATE_CACHE_SECONDS``); a submission is validated
against the template before WeCom is called, so a missing required control or an unknown control id is
refused with a clear message and nothing is sent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction

from wecom_integration import signals
from wecom_integration.approvals import mirror
from wecom_integration.approvals.models import Approval
from wecom_integration.client import WeComError, client_for
from wecom_integration.events import ApprovalChangeEvent

logger = logging.getLogger(__name__)

TEMPLATE_CACHE_SECONDS = 600
#: How far back the reconciliation looks for approvals (WeCom answers at most 31 days per call; the
#: client splits longer ranges).
RECONCILE_DAYS = 31
#: Controls whose ``value`` this module knows how to check and build (doc 91853's control types).
TEXT_CONTROLS = {"Text", "Textarea"}
#: WeCom's answers to apply_data that does not fit the template (among other bad parameters): the OA API's
#: 301025, and the general 40058.
INVALID_PARAMETER = {301025, 40058}


class ApprovalInputError(ValueError):
    """A submission that does not fit its template; ``errors`` maps control ids (or ``"__all__"``) to
    messages for the admin's form and the API's 400."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {value}" for key, value in errors.items()))
        self.errors = errors


def approval_client(config):
    """The client approvals are called with: the dedicated approval secret when the tenant set one,
    else the app's secret."""
    return client_for(config, "approvals")


# Templates -----------------------------------------------------------------------------------------


def _template_key(config, template_id: str) -> str:
    return f"wecom:approval-template:{config.corp_id}:{template_id}"


def get_template(config, template_id: str, *, refresh: bool = False) -> dict:
    """The template's detail (``template_names``, ``template_content.controls``), cached per corp."""
    key = _template_key(config, template_id)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return cached
    template = approval_client(config).approval.get_template_detail(template_id)
    cache.set(key, template, TEMPLATE_CACHE_SECONDS)
    return template


def template_name(template: dict, language: str = "zh_CN") -> str:
    names = template.get("template_names") or []
    for name in names:
        if name.get("lang") == language:
            return name.get("text", "")
    return names[0].get("text", "") if names else ""


def controls(template: dict) -> list[dict]:
    """The template's controls as ``{id, control, title, required}``."""
    result = []
    for item in (template.get("template_content") or {}).get("controls") or []:
        prop = item.get("property") or {}
        titles = prop.get("title") or []
        title = next((t.get("text", "") for t in titles if t.get("lang") == "zh_CN"), "")
        title = title or (titles[0].get("text", "") if titles else prop.get("id", ""))
        result.append(
            {"id": prop.get("id", ""), "control": prop.get("control", ""), "title": title,
             "required": bool(prop.get("require"))}
        )
    return result


def _filled(value) -> bool:
    if value is None:
        return False
    if isinstance(value, dict):
        return any(_filled(item) for item in value.values())
    if isinstance(value, (list, tuple, str)):
        return len(value) > 0
    return True


def check_contents(template: dict, contents: list[dict]) -> list[dict]:
    """``contents`` (``[{control, id, value}]``, WeCom's ``apply_data.contents``) checked against the
    template: every id known, of the template's control type, every required control filled. Returns the
    contents with each control type taken from the template; raises ApprovalInputError."""
    known = {control["id"]: control for control in controls(template)}
    errors: dict[str, str] = {}
    checked = []
    seen = set()
    if not isinstance(contents, list):
        raise ApprovalInputError({"__all__": "contents must be a list of {control, id, value}"})
    for item in contents:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            errors["__all__"] = "each content must be an object with an id"
            continue
        control = known.get(item["id"])
        if control is None:
            errors[item["id"]] = "not a control of this template"
            continue
        if item.get("control") and item["control"] != control["control"]:
            errors[item["id"]] = f"is a {control['control']} control, not {item['control']}"
            continue
        value = item.get("value")
        if control["control"] in TEXT_CONTROLS and isinstance(value, str):
            value = {"text": value}
        if not isinstance(value, dict):
            errors[item["id"]] = "value must be an object as WeCom documents it (e.g. {\"text\": \"…\"})"
            continue
        seen.add(item["id"])
        checked.append({"control": control["control"], "id": item["id"], "value": value})
    for control in known.values():
        if control["required"] and (
            control["id"] not in seen
            or not _filled(next(item["value"] for item in checked if item["id"] == control["id"]))
        ):
            errors.setdefault(control["id"], f"{control['title'] or control['id']} is required")
    if errors:
        raise ApprovalInputError(errors)
    return checked


def text_contents(template: dict, text: str) -> list[dict]:
    """Contents that put ``text`` into every text control of ``template`` (what a joining request
    says); ApprovalInputError when the template requires a control of another kind."""
    items = [
        {"control": control["control"], "id": control["id"], "value": {"text": text}}
        for control in controls(template)
        if control["control"] in TEXT_CONTROLS
    ]
    return check_contents(template, items)


# Submitting ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    creator: str  # the applicant's WeCom userid
    template_id: str
    contents: list[dict]
    approvers: list[str] = ()  # empty: the template's own approval process
    approver_attr: int = 1
    notifyers: list[str] = ()
    summary: list[str] = ()


def submit(config, submission: Submission, *, purpose: str = "", subject_user=None) -> Approval:
    """Check ``submission`` against its template, send it with ``oa/applyevent`` and record it in the
    mirror (status 审批中) at once; the callbacks and the reconciliation bring its decisions."""
    template = get_template(config, submission.template_id)
    contents = check_contents(template, list(submission.contents))
    if not submission.creator:
        raise ApprovalInputError({"creator": "the applicant's WeCom userid is required"})
    try:
        sp_no = approval_client(config).approval.apply(
            creator_userid=submission.creator,
            template_id=submission.template_id,
            contents=contents,
            approvers=[{"attr": submission.approver_attr, "userid": list(submission.approvers)}]
            if submission.approvers
            else None,
            notifyers=list(submission.notifyers) or None,
            summary=list(submission.summary) or None,
        )
    except WeComError as exc:
        if exc.errcode in INVALID_PARAMETER:
            # The cached template may be out of date (an admin changed it in WeCom): check the contents
            # against the template as it is now, so the admin learns which control to fill.
            template = get_template(config, submission.template_id, refresh=True)
            check_contents(template, list(submission.contents))
        raise
    now = int(time.time())
    description = mirror.Description(
        sp_no=sp_no, sp_name=template_name(template), template_id=submission.template_id,
        applicant=submission.creator, applicant_party="", status=Approval.Status.PENDING, apply_time=now,
        records=[], notifyers=list(submission.notifyers), comments=[], contents=contents,
    )
    with transaction.atomic():
        # Observed "0": any description WeCom gives later, even of the same second, replaces this one.
        applied = mirror.apply(config.tenant_id, description, observed=0)
        approval = applied.approval
        if purpose or subject_user is not None:
            approval.purpose = purpose
            approval.subject_user = subject_user
            approval.save(update_fields=["purpose", "subject_user", "updated_at"])
    return approval


# Applying and reconciling --------------------------------------------------------------------------


def send_changed(tenant_id: int, applied: mirror.Applied, *, event=None, source: str) -> None:
    """``signals.approval_changed`` once the change is committed (handled callbacks send theirs through
    the callback table instead)."""

    def send():
        signals.approval_changed.send_robust(
            sender=ApprovalChangeEvent, tenant_id=tenant_id, approval=applied.approval,
            previous_status=applied.previous_status, event=event, callback_event=None, source=source,
            replay=False,
        )

    transaction.on_commit(send)


def reconcile(config, *, days: int = RECONCILE_DAYS, now: int | None = None, after_apply=None) -> dict:
    """Bring the mirror to WeCom's state for every approval of the last ``days`` days: each approval
    WeCom lists that the mirror lacks or holds as not final is fetched with ``getapprovaldetail`` and
    applied. ``after_apply(applied)`` runs for each change inside its transaction (the membership
    outcome). Returns counts."""
    now = int(time.time()) if now is None else now
    client = approval_client(config)
    listed = list(client.approval.iter_sp_nos(now - days * 86400, now))
    final = set(
        Approval.objects.filter(tenant_id=config.tenant_id, sp_no__in=listed)
        .exclude(status=Approval.Status.PENDING)
        .values_list("sp_no", flat=True)
    )
    counts = {"listed": len(listed), "fetched": 0, "changed": 0, "failed": 0}
    for sp_no in listed:
        if sp_no in final:
            continue
        try:
            info = client.approval.get_detail(sp_no)
        except WeComError as exc:
            counts["failed"] += 1
            logger.warning("approval %s could not be fetched: %s", sp_no, exc)
            continue
        counts["fetched"] += 1
        with transaction.atomic():
            applied = mirror.apply(config.tenant_id, mirror.from_detail(info), observed=int(time.time()))
            if applied.changed:
                counts["changed"] += 1
                if after_apply is not None:
                    after_apply(applied)
                send_changed(config.tenant_id, applied, source="reconcile")
    return counts

"""Structured values (a sync's counts, an audit row's detail, a message's content) as a tenant admin reads them:
labelled tables in the admin's language instead of raw JSON.

The keys the app writes are listed in ``LABELS`` with their label; a key not listed (a host's own detail, a
future count) is still shown, under its own name with underscores as spaces, so nothing is ever hidden.
"""

from __future__ import annotations

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

EMPTY = "—"

LABELS = {
    # A directory sync's counts (directory sync: apply, proposals, confirm).
    "departments": _("Departments"),
    "users": _("Members"),
    "customers": _("Customers"),
    "follow_users": _("Follow-up relations"),
    "left": _("Members who left"),
    "created": _("created"),
    "updated": _("updated"),
    "removed": _("removed"),
    "unchanged": _("unchanged"),
    "written": _("rows written"),
    "rows_written": _("Rows written"),
    "not_visible": _("outside the app's visible range"),
    "skipped_newer": _("skipped (a callback was newer)"),
    "accounts_renamed": _("Accounts renamed"),
    "outside_range": _("Outside the app's visible range"),
    "userids": _("userids"),
    "proposals": _("Proposals to review"),
    "bind": _("bind to an existing account"),
    "create": _("create an account"),
    "skip": _("skip"),
    "ambiguous": _("ambiguous (several accounts match)"),
    "confirm": _("Confirmed"),
    "bound": _("bound"),
    "pending": _("pending approval (审核中)"),
    "skipped": _("skipped"),
    "bindings": _("bindings"),
    "memberships": _("memberships"),
    "vanished": _("Vanished while fetching"),
    "fetched_users": _("Members fetched"),
    "fetched_departments": _("Departments fetched"),
    "fetched_customers": _("Customers fetched"),
    "fetched_follow_users": _("Follow-up relations fetched"),
    "members": _("Members"),
    "fetch_seconds": _("Fetching (s)"),
    "seconds": _("Total (s)"),
    "review_left_to": _("Review left to sync"),
    "superseded_by": _("Replaced by sync"),
    # An audit row's detail.
    "source": _("source"),
    "run": _("sync"),
    "kind": _("kind"),
    "reason": _("reason"),
    "membership_deactivated": _("membership deactivated"),
    "previous": _("previous"),
    "username": _("account"),
    "userid": _("userid"),
    "approver": _("approver"),
    # A message's content.
    "content": _("content"),
    "title": _("title"),
    "description": _("description"),
    "url": _("URL"),
    "btntxt": _("button text"),
    "media_id": _("media id"),
    "articles": _("articles"),
    "picurl": _("picture URL"),
}


def label(key) -> str:
    """The admin's label of a key the app writes; any other key under its own name."""
    known = LABELS.get(key)
    return str(known) if known is not None else str(key).replace("_", " ")


def _scalar(value) -> str:
    if value is None or value == "":
        return EMPTY
    if value is True:
        return str(_("yes"))
    if value is False:
        return str(_("no"))
    return str(value)


def labelled(value) -> SafeString:
    """``value`` as escaped HTML: a dict as a table of labelled rows (nested dicts as nested tables), a list
    of plain values as a comma-separated line, a list of dicts as rows of labelled tables, anything else as
    text. Every piece of data is escaped; only the table markup is ours."""
    if isinstance(value, dict):
        if not value:
            return mark_safe(EMPTY)
        rows = format_html_join(
            "", '<tr><th scope="row">{}</th><td>{}</td></tr>', ((label(k), labelled(v)) for k, v in value.items())
        )
        return format_html('<table class="wecom-labelled">{}</table>', rows)
    if isinstance(value, (list, tuple)):
        if not value:
            return mark_safe(EMPTY)
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return format_html("{}", ", ".join(_scalar(item) for item in value))
        return format_html_join("", '<div class="wecom-labelled-item">{}</div>', ((labelled(i),) for i in value))
    return format_html("{}", _scalar(value))



class LabelledJSONAdmin:
    """For view-only admins: every JSON field of the model is shown as a labelled table (:func:`labelled`),
    on the change page under the field's own label; ``<field>_labelled`` names it in ``list_display``."""

    _SUFFIX = "_labelled"

    def _json_fields(self) -> dict:
        from django.db import models

        return {f.name: f for f in self.model._meta.concrete_fields if isinstance(f, models.JSONField)}

    def get_fields(self, request, obj=None):
        json_fields = self._json_fields()
        shown = []
        for name in super().get_fields(request, obj):
            name = name + self._SUFFIX if name in json_fields else name
            if name not in shown:
                shown.append(name)
        return shown

    def get_readonly_fields(self, request, obj=None):
        extra = tuple(name + self._SUFFIX for name in self._json_fields())
        return (*super().get_readonly_fields(request, obj), *extra)

    def __getattr__(self, name):
        # Only the generated display methods; anything else missing is missing.
        if name.startswith("_") or not name.endswith(LabelledJSONAdmin._SUFFIX) or "model" not in self.__dict__:
            raise AttributeError(name)
        field = self._json_fields().get(name[: -len(LabelledJSONAdmin._SUFFIX)])
        if field is None:
            raise AttributeError(name)

        def show(obj):
            return labelled(getattr(obj, field.name))

        show.short_description = field.verbose_name
        return show

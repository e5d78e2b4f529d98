"""The sync screens: the Sync button, the live progress page and the review-and-rebind screen.

Scoped like every directory screen to the tenants the admin administers.
"""


from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from wecom_integration.directory import bindings, sync
from wecom_integration.directory.admin import (
    REVIEW_PAGE_SIZE,
    SEARCH_LIMIT,
    MirrorAdmin,
    TenantFilter,
    admin_tenant,
    tenant_choices,
)
from wecom_integration.display import labelled
from wecom_integration.models import Binding, SyncProposal, SyncRun, WeComUser


def run_progress(run):
    """What the progress page polls: the run's state, plain JSON."""
    return {
        "id": run.pk,
        "kind": run.kind,
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "phase": run.phase,
        "done": run.done,
        "total": run.total,
        "percent": None if not run.total else min(100, round(100 * run.done / run.total)),
        "finished": run.status not in SyncRun.ACTIVE_STATUSES,
        "counts": run.counts,
        # The counts as the page shows them: a labelled table in the admin's language (escaped HTML).
        "counts_html": labelled(run.counts),
        "errors": run.errors,
        "duration": run.duration,
        "fallback_mode": run.fallback_mode,
        # Queued longer than WECOM["QUEUED_JOB_STALE_AFTER"] and no worker started it (issue 24).
        "waiting_for_worker": sync.is_waiting_for_worker(run),
        # Waiting for WeCom's hourly call budget (issue 20): until when, in the admin's time zone.
        "waiting_for_budget_until": _budget_wait(run),
        "queue": sync.queue_of(run),
    }


def _budget_wait(run):
    """The time the run waits for WeCom's hourly budget until, formatted for the admin; "" when it does not."""
    if run.status != SyncRun.Status.PENDING or run.waiting_until is None or run.waiting_until <= timezone.now():
        return ""
    return date_format(timezone.localtime(run.waiting_until), "DATETIME_FORMAT")


PHASE_LABELS = {
    sync.Phase.QUEUED: _("Waiting for a worker"),
    sync.Phase.DEPARTMENTS: _("Fetching departments"),
    sync.Phase.USERS: _("Fetching members per department"),
    sync.Phase.USER_IDS: _("Listing member ids"),
    sync.Phase.DETAILS: _("Fetching member details"),
    sync.Phase.SAVING: _("Saving"),
    sync.Phase.DONE: _("Done"),
    "customers": _("Fetching customers"),
}


@admin.register(SyncRun)
class SyncRunAdmin(MirrorAdmin):
    list_display = ("run_link", "tenant", "kind", "status_text", "phase", "progress", "summary", "duration_text",
                    "started_by", "created_at")
    list_filter = (TenantFilter, "kind", "status")
    list_select_related = ("tenant", "started_by")
    change_list_template = "admin/wecom_integration/sync/change_list.html"
    actions = ["cancel_waiting"]

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("start/", view(self.start_view), name="%s_%s_start" % info),
            path("<int:object_id>/progress/", view(self.progress_view), name="%s_%s_progress" % info),
            path("<int:object_id>/progress.json", view(self.progress_json_view), name="%s_%s_progress_json" % info),
            path("<int:object_id>/review/", view(self.review_view), name="%s_%s_review" % info),
            path("<int:object_id>/cancel/", view(self.cancel_view), name="%s_%s_cancel" % info),
            path("<int:object_id>/review/search.json", view(self.review_search_view),
                 name="%s_%s_review_search" % info),
        ] + super().get_urls()

    # The list --------------------------------------------------------------------------------------

    @admin.display(description=_("run"), ordering="id")
    def run_link(self, obj):
        return format_html('<a href="{}">#{}</a>', reverse("admin:wecom_integration_syncrun_progress",
                                                          args=[obj.pk]), obj.pk)

    @admin.display(description=_("status"), ordering="status")
    def status_text(self, obj):
        if sync.is_waiting_for_worker(obj):
            return _("Waiting for a worker (queue “%(queue)s”)") % {"queue": sync.queue_of(obj)}
        return obj.get_status_display()

    @admin.action(description=_("Cancel the selected syncs no worker has started"), permissions=["view"])
    def cancel_waiting(self, request, queryset):
        """Cancel what no worker has started (issue 24); the rest of the selection is left alone."""
        selected = queryset.count()
        cancelled = sync.cancel_runs(queryset, actor=request.user)
        self.message_user(
            request,
            ngettext("%(count)d sync cancelled.", "%(count)d syncs cancelled.", cancelled) % {"count": cancelled},
            messages.SUCCESS if cancelled else messages.WARNING,
        )
        if selected > cancelled:
            skipped = selected - cancelled
            self.message_user(
                request,
                ngettext(
                    "%(count)d sync was left alone: a worker had started it or it had finished.",
                    "%(count)d syncs were left alone: a worker had started them or they had finished.",
                    skipped,
                ) % {"count": skipped},
                messages.WARNING,
            )

    def cancel_view(self, request, object_id):
        """The progress page's Cancel button: cancel one sync no worker has started."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self.tenant_admin_view(request, object_id, "view")
        self.cancel_waiting(request, SyncRun.objects.filter(pk=run.pk))
        return HttpResponseRedirect(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]))

    @admin.display(description=_("progress"))
    def progress(self, obj):
        return f"{obj.done}/{obj.total}" if obj.total else "—"

    @admin.display(description=_("counts"))
    def summary(self, obj):
        counts = obj.counts or {}
        users = counts.get("users") or counts.get("customers") or {}
        if not users:
            return "—"
        return _("+%(created)s ~%(updated)s -%(removed)s, %(written)s rows written") % {
            "created": users.get("created", 0),
            "updated": users.get("updated", 0),
            "removed": users.get("removed", 0),
            "written": counts.get("rows_written", 0),
        }

    @admin.display(description=_("duration"))
    def duration_text(self, obj):
        return "—" if obj.duration is None else f"{obj.duration:.1f} s"

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            "sync_tenants": tenant_choices(request).filter(wecom_config__isnull=False),
            "start_url": reverse("admin:wecom_integration_syncrun_start"),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        run = self.tenant_admin_view(request, object_id, "view")
        return HttpResponseRedirect(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]))

    # Start and progress ----------------------------------------------------------------------------

    def start_view(self, request):
        """The Sync button: start a contact (or customer) sync of one tenant, then show its progress."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_view_permission(request):
            raise PermissionDenied
        tenant = admin_tenant(request, request.POST.get("tenant"))
        if tenant is None:
            raise PermissionDenied
        kind = request.POST.get("kind") or SyncRun.Kind.CONTACTS
        if kind not in SyncRun.Kind.values:
            kind = SyncRun.Kind.CONTACTS
        try:
            run = sync.start_sync(tenant, kind, request.user)
        except sync.SyncAlreadyRunning as exc:
            self.message_user(request, _("A sync is already running for this tenant."), messages.WARNING)
            if exc.run is None:
                return HttpResponseRedirect(reverse("admin:wecom_integration_syncrun_changelist"))
            run = exc.run
        return HttpResponseRedirect(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]))

    def progress_view(self, request, object_id):
        run = self.tenant_admin_view(request, object_id, "view")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Sync #%(id)s of %(tenant)s") % {"id": run.pk, "tenant": run.tenant},
            "run": run,
            "state": run_progress(run),
            "phase_labels": {key: str(label) for key, label in PHASE_LABELS.items()},
            "json_url": reverse("admin:wecom_integration_syncrun_progress_json", args=[run.pk]),
            "review_url": reverse("admin:wecom_integration_syncrun_review", args=[run.pk]),
            "cancel_url": reverse("admin:wecom_integration_syncrun_cancel", args=[run.pk]),
        }
        return TemplateResponse(request, "admin/wecom_integration/sync/progress.html", context)

    def progress_json_view(self, request, object_id):
        run = self.tenant_admin_view(request, object_id, "view")
        return JsonResponse(run_progress(run))

    # Review ----------------------------------------------------------------------------------------

    def review_view(self, request, object_id):
        """Seed 001's review: the tenant's account on the left, the proposed WeCom member on the right;
        accept, remove, pick another member or account, or mark "create a new account"; then Confirm."""
        run = self.tenant_admin_view(request, object_id, "view")
        url = reverse("admin:wecom_integration_syncrun_review", args=[run.pk])
        if request.method == "POST":
            return self._review_post(request, run, url)
        proposals = (
            run.proposals.select_related("wecom_user", "user").order_by("-ambiguous", "wecom_user__userid")
        )
        query = (request.GET.get("q") or "").strip()
        if query:
            User = get_user_model()
            proposals = proposals.filter(
                Q(wecom_user__userid__icontains=query)
                | Q(wecom_user__name__icontains=query)
                | Q(**{f"user__{User.USERNAME_FIELD}__icontains": query})
            )
        if request.GET.get("ambiguous") == "1":
            proposals = proposals.filter(ambiguous=True)
        action = request.GET.get("action")
        if action in SyncProposal.Action.values:
            proposals = proposals.filter(action=action)
        page = Paginator(proposals, REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
        # Members the app could not read (outside its visible range), with what to change in WeCom.
        outside_range = (run.counts or {}).get("outside_range") or {}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Review sync #%(id)s of %(tenant)s") % {"id": run.pk, "tenant": run.tenant},
            "run": run,
            "page": page,
            "query": query,
            "ambiguous_only": request.GET.get("ambiguous") == "1",
            "action_filter": action or "",
            "actions": SyncProposal.Action.choices,
            "counts": (run.counts or {}).get("proposals", {}),
            "outside_range": outside_range,
            "outside_range_more": max(0, outside_range.get("users", 0) - len(outside_range.get("userids", ()))),
            "editable": run.status == SyncRun.Status.REVIEW,
            "search_url": reverse("admin:wecom_integration_syncrun_review_search", args=[run.pk]),
            "progress_url": reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]),
        }
        return TemplateResponse(request, "admin/wecom_integration/sync/review.html", context)

    def _review_post(self, request, run, url):
        if run.status != SyncRun.Status.REVIEW:
            self.message_user(request, _("This sync is not waiting for review."), messages.ERROR)
            return HttpResponseRedirect(url)
        rows = []
        for raw in request.POST.getlist("proposal"):
            try:
                pk = int(raw)
            except ValueError:
                continue
            rows.append({
                "proposal": pk,
                "action": request.POST.get(f"action-{pk}", SyncProposal.Action.SKIP),
                "username": (request.POST.get(f"username-{pk}") or "").strip(),
                "wecom_userid": (request.POST.get(f"wecom-{pk}") or "").strip(),
            })
        back = url + ("?" + request.POST["querystring"] if request.POST.get("querystring") else "")
        try:
            sync.update_proposals(run, rows)
        except sync.ConfirmError as exc:
            self._report(request, exc)
            return HttpResponseRedirect(back)
        if "confirm" not in request.POST:
            self.message_user(request, _("Your changes to this page were saved."), messages.SUCCESS)
            return HttpResponseRedirect(back)
        try:
            counts = sync.confirm_run(run, actor=request.user, accept_proposals=True, create_unmatched=True)
        except sync.ConfirmError as exc:
            self._report(request, exc)
            return HttpResponseRedirect(back)
        self.message_user(
            request,
            _("Confirmed: %(bound)s bound, %(created)s accounts created, %(pending)s pending approval, "
              "%(updated)s updated.") % counts,
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:wecom_integration_syncrun_progress", args=[run.pk]))

    def _report(self, request, exc):
        self.message_user(request, _("Nothing was changed:"), messages.ERROR)
        for error in exc.errors[:20]:
            who = " ".join(part for part in (error.get("wecom_userid"), error.get("username")) if part)
            self.message_user(request, f"{who}: {error['message']}" if who else error["message"], messages.ERROR)
        if len(exc.errors) > 20:
            self.message_user(request, _("… and %(count)s more.") % {"count": len(exc.errors) - 20}, messages.ERROR)

    def review_search_view(self, request, object_id):
        """Search for the review screen's pickers: ``?kind=accounts`` (the tenant's unbound accounts) or
        ``?kind=members`` (its unbound WeCom members), ``?q=``; at most 50 results."""
        run = self.tenant_admin_view(request, object_id, "view")
        query = (request.GET.get("q") or "").strip()
        tenant = run.tenant
        bound = Binding.objects.filter(tenant=tenant)
        if request.GET.get("kind") == "members":
            members = WeComUser.objects.filter(
                tenant=tenant, removed=False, status__in=sync.BINDABLE_STATUSES
            ).exclude(pk__in=bound.values("wecom_user_id"))
            if query:
                members = members.filter(Q(userid__icontains=query) | Q(name__icontains=query))
            results = [{"value": userid, "label": name}
                       for userid, name in members.order_by("userid").values_list("userid", "name")[:SEARCH_LIMIT]]
        else:
            User = get_user_model()
            field = User.USERNAME_FIELD
            accounts = bindings.tenant_users(tenant).exclude(pk__in=bound.values("user_id")).distinct()
            if query:
                accounts = accounts.filter(
                    Q(**{f"{field}__icontains": query}) | Q(first_name__icontains=query) | Q(last_name__icontains=query)
                )
            results = [
                {"value": username, "label": f"{first} {last}".strip()}
                for username, first, last in accounts.order_by(field).values_list(field, "first_name", "last_name")[
                    :SEARCH_LIMIT
                ]
            ]
        return JsonResponse({"results": results})


# Approvals of pending members are audited from every entry point, the admin's included.

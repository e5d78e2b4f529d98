"""The directory and sync API: the tenant's mirror, starting and reading syncs, confirming them.

Every view acts in the tenant of ``X-Tenant-Id`` and sees only that tenant's rows: another tenant's
run id answers 404. Reading needs an active member; starting and confirming need a tenant admin.
"""

from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, Subquery
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from wecom_integration.api.auth import IsTenantAdmin, IsTenantMember, request_tenant
from wecom_integration.api.base import TenantAPIMixin
from wecom_integration.directory import sync
from wecom_integration.models import Binding, Department, SyncProposal, SyncRun, WeComUser

PROPOSALS_PAGE_SIZE = 100
PROPOSALS_MAX_PAGE_SIZE = 1000


# Serializers ---------------------------------------------------------------------------------------


class DepartmentSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="dept_id")

    class Meta:
        model = Department
        fields = ("id", "name", "name_en", "parent_id", "order", "leaders")


class WeComUserSerializer(serializers.ModelSerializer):
    bound_username = serializers.CharField(allow_null=True, read_only=True)
    binding_active = serializers.BooleanField(allow_null=True, read_only=True)

    class Meta:
        model = WeComUser
        fields = (
            "userid",
            "name",
            "departments",
            "main_department",
            "position",
            "status",
            "removed",
            "bound_username",
            "binding_active",
        )


class SyncRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    duration = serializers.FloatField(read_only=True, allow_null=True)
    started_by = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = (
            "id",
            "kind",
            "status",
            "phase",
            "done",
            "total",
            "progress",
            "counts",
            "errors",
            "fallback_mode",
            "started_by",
            "created_at",
            "started_at",
            "finished_at",
            "duration",
        )

    def get_progress(self, run) -> float | None:
        """Done / total of the current phase, 0..1; null while the total is unknown."""
        if run.status in (SyncRun.Status.REVIEW, SyncRun.Status.CONFIRMED, SyncRun.Status.SUCCEEDED):
            return 1.0
        if not run.total:
            return None
        return round(min(run.done, run.total) / run.total, 4)

    def get_started_by(self, run) -> str | None:
        return run.started_by.get_username() if run.started_by_id else None


class ProposalSerializer(serializers.ModelSerializer):
    wecom_userid = serializers.CharField(source="wecom_user.userid")
    wecom_name = serializers.CharField(source="wecom_user.name")
    username = serializers.SerializerMethodField()
    user_name = serializers.SerializerMethodField()

    class Meta:
        model = SyncProposal
        fields = ("wecom_userid", "wecom_name", "action", "username", "user_name", "ambiguous", "note")

    def get_username(self, proposal) -> str | None:
        return proposal.user.get_username() if proposal.user_id else None

    def get_user_name(self, proposal) -> str | None:
        return proposal.user.get_full_name() if proposal.user_id else None


class DecisionSerializer(serializers.Serializer):
    wecom_userid = serializers.CharField(max_length=64)
    action = serializers.ChoiceField(choices=["bind", "create", "skip"])
    username = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate(self, attrs):
        if attrs["action"] == "bind" and not attrs.get("username"):
            raise serializers.ValidationError({"username": _("A bind needs the username of the account.")})
        return attrs


class ConfirmSerializer(serializers.Serializer):
    decisions = DecisionSerializer(many=True, required=False, default=list)
    accept_proposals = serializers.BooleanField(required=False, default=False)
    create_unmatched = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs):
        if not (attrs["decisions"] or attrs["accept_proposals"] or attrs["create_unmatched"]):
            raise serializers.ValidationError(
                _("Send decisions, or accept_proposals / create_unmatched, or both.")
            )
        userids = [d["wecom_userid"] for d in attrs["decisions"]]
        if len(userids) != len(set(userids)):
            raise serializers.ValidationError({"decisions": _("Each WeCom member may appear once.")})
        return attrs


class StartSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=SyncRun.Kind.choices, required=False, default=SyncRun.Kind.CONTACTS)


# Views ---------------------------------------------------------------------------------------------


class DepartmentListView(TenantAPIMixin, generics.ListAPIView):
    """The tenant's department tree, flat: each department with its ``parent_id`` (removed ones left
    out unless ``?include_removed=true``). Not paginated: a client needs the whole tree to draw it."""

    serializer_class = DepartmentSerializer
    pagination_class = None

    def get_queryset(self):
        departments = Department.objects.filter(tenant=request_tenant(self.request))
        if self.request.query_params.get("include_removed") != "true":
            departments = departments.filter(removed=False)
        return departments.order_by("parent_id", "-order", "dept_id")


class WeComUserListView(TenantAPIMixin, generics.ListAPIView):
    """The tenant's WeCom members with the username each is bound to (or null), paginated.

    ``?search=`` matches userid or name; ``?bound=true|false``; ``?include_removed=true`` adds members
    who left WeCom.
    """

    serializer_class = WeComUserSerializer

    def get_queryset(self):
        tenant = request_tenant(self.request)
        params = self.request.query_params
        User = get_user_model()
        binding = Binding.objects.filter(tenant=tenant, wecom_user=OuterRef("pk"))
        members = WeComUser.objects.filter(tenant=tenant).annotate(
            bound_username=Subquery(binding.values(f"user__{User.USERNAME_FIELD}")[:1]),
            binding_active=Subquery(binding.values("is_active")[:1]),
        )
        if params.get("include_removed") != "true":
            members = members.filter(removed=False)
        search = (params.get("search") or "").strip()
        if search:
            members = members.filter(Q(userid__icontains=search) | Q(name__icontains=search))
        bound = params.get("bound")
        if bound in ("true", "false"):
            members = members.filter(Exists(binding)) if bound == "true" else members.exclude(Exists(binding))
        return members.order_by("userid")


class SyncRunsView(TenantAPIMixin, generics.ListAPIView):
    """``GET``: the tenant's sync runs, newest first (paginated; ``?kind=``). ``POST``: start a sync
    (tenant admin); body ``{"kind": "contacts" | "customers"}``, default contacts. 202 with the run, or
    409 with the running one's id when a sync of that kind is already pending or running."""

    serializer_class = SyncRunSerializer

    def get_permissions(self):
        if self.request.method == "POST":
            return [IsTenantAdmin()]
        return [IsTenantMember()]

    def get_queryset(self):
        runs = SyncRun.objects.filter(tenant=request_tenant(self.request)).select_related("started_by")
        kind = self.request.query_params.get("kind")
        if kind:
            runs = runs.filter(kind=kind)
        return runs.order_by("-created_at", "-id")

    def post(self, request):
        params = StartSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        tenant = request_tenant(request)
        try:
            run = sync.start_sync(tenant, params.validated_data["kind"], request.user)
        except sync.SyncAlreadyRunning as exc:
            return Response(
                {"detail": _("A sync is already running for this tenant."), "run": exc.run.pk if exc.run else None},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def tenant_run(request, run_id):
    """The run if it belongs to the request's tenant, else 404."""
    return get_object_or_404(
        SyncRun.objects.select_related("started_by", "tenant"), pk=run_id, tenant=request_tenant(request)
    )


def _page_params(request):
    try:
        page = max(1, int(request.query_params.get("page", 1)))
        size = int(request.query_params.get("page_size", PROPOSALS_PAGE_SIZE))
    except ValueError:
        raise serializers.ValidationError({"page": _("page and page_size must be integers.")}) from None
    return page, max(1, min(size, PROPOSALS_MAX_PAGE_SIZE))


def run_detail(request, run):
    """The run with one page of its proposals (``?page=``, ``?page_size=`` up to 1000,
    ``?ambiguous=true``, ``?action=``), ambiguous names flagged."""
    data = SyncRunSerializer(run).data
    proposals = run.proposals.select_related("wecom_user", "user").order_by("-ambiguous", "wecom_user__userid")
    if request.query_params.get("ambiguous") == "true":
        proposals = proposals.filter(ambiguous=True)
    action = request.query_params.get("action")
    if action in SyncProposal.Action.values:
        proposals = proposals.filter(action=action)
    page, size = _page_params(request)
    count = proposals.count()
    rows = proposals[(page - 1) * size : page * size]
    data["proposals"] = {
        "count": count,
        "page": page,
        "page_size": size,
        "results": ProposalSerializer(rows, many=True).data,
    }
    return data


class SyncRunDetailView(TenantAPIMixin, APIView):
    """One run: phase, progress, counts, errors and a page of its proposals."""

    serializer_class = SyncRunSerializer

    def get(self, request, run_id):
        return Response(run_detail(request, tenant_run(request, run_id)))


class SyncConfirmView(TenantAPIMixin, APIView):
    """Confirm a contact sync waiting for review (tenant admin), in one transaction::

        {"decisions": [{"wecom_userid": "…", "action": "bind" | "create" | "skip", "username": "…"}]}
        {"accept_proposals": true, "create_unmatched": true}

    Both forms may be combined; decisions override the proposals of their members. 200 with the counts
    and the run; 400 with ``errors`` (one per bad decision; nothing changed); 409 when the run is not
    waiting for review.
    """

    permission_classes = [IsTenantAdmin]
    serializer_class = ConfirmSerializer

    def post(self, request, run_id):
        run = tenant_run(request, run_id)
        body = ConfirmSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        decisions = [
            sync.Decision(d["wecom_userid"], d["action"], d.get("username") or "") for d in values["decisions"]
        ]
        try:
            counts = sync.confirm_run(
                run,
                actor=request.user,
                decisions=decisions,
                accept_proposals=values["accept_proposals"],
                create_unmatched=values["create_unmatched"],
            )
        except sync.ConfirmError as exc:
            conflict = exc.code in ("not_in_review", "conflict")
            code = status.HTTP_409_CONFLICT if conflict else status.HTTP_400_BAD_REQUEST
            return Response({"detail": _("Nothing was changed."), "errors": exc.errors}, status=code)
        run.refresh_from_db()
        return Response({"counts": counts, "run": SyncRunSerializer(run).data})

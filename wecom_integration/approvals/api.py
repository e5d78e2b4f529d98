"""Approvals over HTTP (tenant administrators only): list the tenant's approvals with the admin's filters,
read one with its records, and submit one for a member, its controls checked against the template
before WeCom is called.

``POST /api/wecom/approvals/`` takes ``{"creator": "<WeCom userid>", "template_id": "…", "contents":
[{"id": "Text-01", "value": {"text": "…"}} …], "approvers": ["userid" …], "approver_attr": 1,
"notifyers": […], "summary": […]}``; a text control may take a plain string as its value. Answers 201
with the approval, 400 with ``errors`` by control id when the contents do not fit the template, 502 when
WeCom refused it.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from wecom_integration.api.auth import IsTenantAdmin, request_tenant
from wecom_integration.api.base import TenantAPIMixin, method_schema
from wecom_integration.approvals import services
from wecom_integration.approvals.models import Approval
from wecom_integration.client import WeComError
from wecom_integration.models import WeComUser

TENANT_PARAMETER = OpenApiParameter(name="X-Tenant-Id", type=int, location=OpenApiParameter.HEADER, required=False)
FILTERS = [
    OpenApiParameter(name="status", type=int, description="WeCom's sp_status: 1, 2, 3, 4, 6, 7 or 10"),
    OpenApiParameter(name="template_id", type=str),
    OpenApiParameter(name="applicant", type=str, description="the applicant's WeCom userid"),
]


class ApprovalSerializer(serializers.ModelSerializer):
    status_label = serializers.CharField(source="get_status_display", read_only=True)
    subject_user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Approval
        fields = (
            "sp_no", "sp_name", "template_id", "applicant", "applicant_party", "status", "status_label",
            "apply_time", "contents", "records", "notifyers", "comments", "purpose", "subject_user", "settled",
            "updated_at",
        )
        read_only_fields = fields


class SubmissionSerializer(serializers.Serializer):
    creator = serializers.CharField(max_length=64)
    template_id = serializers.CharField(max_length=128)
    contents = serializers.ListField(child=serializers.DictField(), allow_empty=True)
    approvers = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    approver_attr = serializers.ChoiceField(choices=[1, 2], required=False, default=1)
    notifyers = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    summary = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)


def tenant_approvals(request):
    return Approval.objects.filter(tenant=request_tenant(request)).select_related("subject_user")


@extend_schema(parameters=[TENANT_PARAMETER], tags=["approvals"])
class ApprovalListView(TenantAPIMixin, generics.ListCreateAPIView):
    """The tenant's approvals, newest first, filtered by ``status``, ``template_id`` and ``applicant``;
    POST submits one."""

    serializer_class = ApprovalSerializer
    permission_classes = [IsTenantAdmin]

    def get_queryset(self):
        queryset = tenant_approvals(self.request)
        params = self.request.query_params
        if params.get("status"):
            try:
                queryset = queryset.filter(status=int(params["status"]))
            except ValueError:
                raise serializers.ValidationError({"status": "must be one of WeCom's sp_status numbers"}) from None
        if params.get("template_id"):
            queryset = queryset.filter(template_id=params["template_id"])
        if params.get("applicant"):
            queryset = queryset.filter(applicant=params["applicant"])
        return queryset

    @method_schema(parameters=FILTERS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @method_schema(request=SubmissionSerializer, responses={201: ApprovalSerializer})
    def post(self, request, *args, **kwargs):
        tenant = request_tenant(request)
        data = SubmissionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        # The applicant must be a member of this tenant's WeCom (in the mirror), never another corp's.
        if not WeComUser.objects.filter(tenant=tenant, userid=values["creator"], removed=False).exists():
            return Response({"errors": {"creator": "not a WeCom member of this tenant"}},
                            status=status.HTTP_400_BAD_REQUEST)
        config = getattr(tenant, "wecom_config", None)
        if config is None:
            return Response({"errors": {"__all__": "WeCom is not configured for this tenant"}},
                            status=status.HTTP_400_BAD_REQUEST)
        submission = services.Submission(
            creator=values["creator"], template_id=values["template_id"], contents=values["contents"],
            approvers=values["approvers"], approver_attr=values["approver_attr"], notifyers=values["notifyers"],
            summary=values["summary"],
        )
        try:
            approval = services.submit(config, submission)
        except services.ApprovalInputError as exc:
            return Response({"errors": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        except WeComError as exc:
            return Response(
                {"errors": {"__all__": "WeCom refused the approval"}, "errcode": exc.errcode},
                status=status.HTTP_502_BAD_GATEWAY,
            )
        return Response(ApprovalSerializer(approval).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[TENANT_PARAMETER], tags=["approvals"])
class ApprovalDetailView(TenantAPIMixin, generics.RetrieveAPIView):
    """One approval of the tenant by its number, with every approver's decision and the comments."""

    serializer_class = ApprovalSerializer
    permission_classes = [IsTenantAdmin]
    lookup_field = "sp_no"

    def get_queryset(self):
        return tenant_approvals(self.request)

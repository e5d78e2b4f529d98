from django.urls import path

from wecom_integration.approvals import api

urlpatterns = [
    path("api/wecom/approvals/", api.ApprovalListView.as_view(), name="api-approvals"),
    path("api/wecom/approvals/<str:sp_no>/", api.ApprovalDetailView.as_view(), name="api-approval"),
]

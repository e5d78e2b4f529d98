"""The directory and sync API (issue 5). These paths and bodies are a public contract."""

from django.urls import path

from wecom_integration.directory import api as sync

urlpatterns = [
    path("api/wecom/departments/", sync.DepartmentListView.as_view(), name="api-wecom-departments"),
    path("api/wecom/users/", sync.WeComUserListView.as_view(), name="api-wecom-users"),
    path("api/wecom/sync/", sync.SyncRunsView.as_view(), name="api-wecom-sync"),
    path("api/wecom/sync/<int:run_id>/", sync.SyncRunDetailView.as_view(), name="api-wecom-sync-detail"),
    path("api/wecom/sync/<int:run_id>/confirm/", sync.SyncConfirmView.as_view(), name="api-wecom-sync-confirm"),
]

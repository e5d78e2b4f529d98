from django.urls import path

from wecom_integration.messaging import api as messaging

urlpatterns = [
    # Public contract: JeecgBoot's path, without a trailing slash.
    path("sys/thirdApp/sendMessageTest", messaging.SendMessageTestView.as_view(), name="send-message-test"),
    path("api/messages/", messaging.MessageLogListView.as_view(), name="api-messages"),
    path("api/messages/<int:pk>/", messaging.MessageLogDetailView.as_view(), name="api-message"),
    path("api/schema/", messaging.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", messaging.DocsView.as_view(), name="api-docs"),
]

"""Sign-in URLs. The WeCom paths are a public contract: the homepage start URL and the callback's domain
are entered in WeCom's admin console, and the verification page is the tenant's 企业二次验证页面."""

from django.contrib.auth import views as auth_views
from django.urls import path

from wecom_integration.login import views as login

urlpatterns = [
    path("accounts/login/", login.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="wecom_integration:login"), name="logout"),
    path("wecom/login/", login.ChooseTenantView.as_view(), name="login-choose"),
    path("wecom/login/<int:tenant_id>/", login.StartView.as_view(flow="qr"), name="login-qr"),
    path("wecom/oauth/callback/", login.CallbackView.as_view(), name="oauth-callback"),
    path("wecom/oauth/<int:tenant_id>/", login.StartView.as_view(flow="oauth"), name="oauth-start"),
    path("wecom/verify/<int:tenant_id>/", login.VerifyView.as_view(), name="verify"),
]

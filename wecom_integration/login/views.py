"""Sign-in pages: the login page, the starts of both WeCom flows, WeCom's callback and the two-step
verification page. Thin: the flows are in :mod:`wecom_integration.login.services`; every refusal is
rendered as a page in the visitor's language with the status it carries, never a 500."""

from django.contrib.auth import views as auth_views
from django.core.exceptions import FieldDoesNotExist
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import urlencode
from django.views import View
from django.views.decorators.cache import never_cache

from wecom_integration.extension import get_adapter
from wecom_integration.login import refusals
from wecom_integration.login import services as flows
from wecom_integration.tenancy import get_tenant_model

ERROR_TEMPLATE = "wecom_integration/login/error.html"
VERIFIED_TEMPLATE = "wecom_integration/login/verified.html"


def wecom_login_url(tenant_id, next_url=""):
    """Path of the "Sign in with WeCom" (QR) start for a tenant."""
    path = reverse("wecom_integration:login-qr", kwargs={"tenant_id": tenant_id})
    return f"{path}?{urlencode({'next': next_url})}" if next_url else path


def refusal_response(request, refusal, retry_url=None):
    """The page that explains a LoginRefused, with the status it carries."""
    tenant = refusal.tenant
    if retry_url is None:
        retry_url = flows.login_url_with_next(tenant_id=tenant.pk if tenant is not None else None)
    context = {"error": refusal, "tenant": tenant, "retry_url": retry_url}
    return render(request, ERROR_TEMPLATE, context, status=refusal.status)


def _find_tenant(value):
    """A tenant with an enabled WeCom configuration, by id or code, or None."""
    value = (value or "").strip()
    if not value:
        return None
    tenants = get_tenant_model()._default_manager.filter(wecom_config__enabled=True)
    if value.isdigit() and int(value) <= flows.MAX_ID:
        found = tenants.filter(pk=int(value)).first()
        if found is not None:
            return found
    try:
        get_tenant_model()._meta.get_field("code")
    except FieldDoesNotExist:
        return None
    return tenants.filter(code=value).first()


class LoginView(auth_views.LoginView):
    """Django's username/password login plus "Sign in with WeCom" for the tenant chosen with
    ``?tenant=`` (id or code), or a choice of tenants."""

    template_name = "wecom_integration/login/login.html"

    def get_default_redirect_url(self):
        """No safe ``next``: the adapter's choice (the host's LOGIN_REDIRECT_URL, never a 404)."""
        return get_adapter(self.request).get_login_redirect_url(self.request, None)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        next_url = context.get(self.redirect_field_name) or ""
        tenant = _find_tenant(self.request.GET.get("tenant"))
        context["wecom_tenant"] = tenant
        context["wecom_login_url"] = wecom_login_url(tenant.pk, next_url) if tenant else ""
        context["wecom_tenants"] = [] if tenant else list(get_adapter(self.request).list_login_tenants(self.request))
        return context


@method_decorator(never_cache, name="dispatch")
class ChooseTenantView(View):
    """The tenant select of the login page: ``?tenant=`` (id or code) → that tenant's WeCom sign-in."""

    def get(self, request):
        tenant = _find_tenant(request.GET.get("tenant"))
        if tenant is None:
            return refusal_response(request, refusals.LoginDisabled())
        return HttpResponseRedirect(wecom_login_url(tenant.pk, flows.safe_next(request, request.GET.get("next"))))


@method_decorator(never_cache, name="dispatch")
class StartView(View):
    """Issue a fresh state and send the browser to WeCom: the QR login page (``flow = "qr"``) or, inside
    WeCom, the authorize URL (``flow = "oauth"``: the URL pasted as the app's homepage points here)."""

    flow = flows.FLOW_QR

    def get(self, request, tenant_id):
        try:
            url = flows.start(request, tenant_id, self.flow, request.GET.get("next"))
        except refusals.LoginRefused as refusal:
            return refusal_response(request, refusal)
        return HttpResponseRedirect(url)


@method_decorator(never_cache, name="dispatch")
class CallbackView(View):
    """Where WeCom sends the browser back with ``code`` and ``state`` (both flows)."""

    def get(self, request):
        try:
            result = flows.complete(request, request.GET.get("code", ""), request.GET.get("state", ""))
        except refusals.LoginRefused as refusal:
            return refusal_response(request, refusal)
        return HttpResponseRedirect(result.redirect_to)


@method_decorator(never_cache, name="dispatch")
class VerifyView(View):
    """The two-step verification page (企业二次验证页面) WeCom opens with ``code``. The code is spent at once;
    the member then passes the tenant's check (by default: signed in here as their bound account) and
    the page calls ``user/authsucc``. https://developer.work.weixin.qq.com/document/path/90203"""

    def get(self, request, tenant_id):
        code = request.GET.get("code")
        try:
            if code:
                # Drop the code from the address: a reload or the sign-in round trip must not reuse it.
                return HttpResponseRedirect(flows.begin_verification(request, tenant_id, code))
            token = request.GET.get("v")
            if not token:
                raise refusals.MissingCode()
            verification = flows.continue_verification(request, tenant_id, token)
        except refusals.WrongAccount as refusal:
            here = flows.verify_url(tenant_id, request.GET.get("v"))
            return refusal_response(request, refusal, flows.login_url_with_next(here, tenant_id))
        except refusals.LoginRefused as refusal:
            return refusal_response(request, refusal)
        if not verification.verified:
            return HttpResponseRedirect(verification.redirect_to)
        context = {"tenant": verification.config.tenant, "verified_user": verification.user}
        return render(request, VERIFIED_TEMPLATE, context)

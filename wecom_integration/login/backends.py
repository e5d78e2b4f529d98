"""An authentication backend for host projects that run their own sign-in views.

Add it to the settings::

    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "wecom_integration.login.backends.WeComBackend",
    ]

and, in a view that WeCom redirected back to with ``code`` (after checking your own ``state``)::

    user = authenticate(request, wecom_code=request.GET["code"], tenant_id=tenant.pk)
    if user is None:
        refusal = getattr(request, "wecom_login_error", None)  # a LoginRefused saying why
    else:
        login(request, user)

The backend runs the same checks as the product's own sign-in (a code is used once; the member must be
bound in that tenant, the account and its membership active; the adapter decides) but does not check a
state: the view that issued the redirect owns it.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend

from wecom_integration.login import refusals
from wecom_integration.login import services as flows


class WeComBackend(BaseBackend):
    """Authenticates a WeCom sign-in code (``auth/getuserinfo``) against a tenant's bindings.

    https://developer.work.weixin.qq.com/document/path/91023
    """

    # No **kwargs: Django then skips this backend for username/password credentials.
    def authenticate(self, request, wecom_code=None, tenant_id=None):
        """The bound, active user ``wecom_code`` stands for in ``tenant_id``, or None. On None the reason
        (a :class:`~wecom_integration.login.refusals.LoginRefused`) is at ``request.wecom_login_error``."""
        if not wecom_code or tenant_id is None:
            return None
        try:
            config = flows.get_config(tenant_id)
            identity = flows.authenticate_code(request, config, wecom_code)
        except refusals.LoginRefused as exc:
            if request is not None:
                request.wecom_login_error = exc
            return None
        return identity.user

    def get_user(self, user_id):
        User = get_user_model()
        try:
            user = User._default_manager.get(pk=user_id)
        except User.DoesNotExist:
            return None
        return user if getattr(user, "is_active", True) else None

"""The chat sidebar (聊天工具栏, seed 002's 聊天侧边栏数据调用): a page a tenant admin adds to the customer-contact
toolbar in WeCom's admin. Inside the WeCom client it signs the member in with the in-app OAuth, configures
the JS-SDK (``wx.config``, ``wx.agentConfig``), asks the client which customer (``getCurExternalContact``) or
customer group (``getCurExternalChat``) the member is talking to, and shows what the system knows of them.

Host projects add their own panels: the adapter's ``sidebar_panels(request, tenant, contact)`` (a list of
``(title, html)``) or the template block ``wecom_sidebar_panels`` of ``wecom_integration/sidebar/customer.html``.
"""

import json
import logging

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from wecom_integration.client import WeComError
from wecom_integration.conf import wecom_settings
from wecom_integration.customers.tags import tag_names
from wecom_integration.extension import get_adapter
from wecom_integration.jssdk import services
from wecom_integration.models import (
    CallbackEvent,
    CustomerGroup,
    CustomerGroupMember,
    ExternalContact,
    WeComConfig,
)

logger = logging.getLogger(__name__)

def _member_tenant(request, tenant_id):
    """The tenant's WeCom configuration if the signed-in user is an active member; None when signed out."""
    config = WeComConfig.objects.filter(tenant_id=tenant_id, enabled=True).select_related("tenant").first()
    if config is None:
        raise Http404("no such tenant")
    if not request.user.is_authenticated:
        return None
    if not get_adapter(request).is_tenant_member(request.user, config.tenant):
        raise PermissionDenied
    return config


def sidebar(request, tenant_id):
    """The page itself: signed out, the member is sent through WeCom's in-app sign-in and back here."""
    config = _member_tenant(request, tenant_id)
    if config is None:
        start = reverse("wecom_integration:oauth-start", args=[tenant_id])
        return HttpResponseRedirect(f"{start}?{urlencode({'next': request.get_full_path()})}")
    page = request.build_absolute_uri()
    error = ""
    try:
        js = services.js_config(config, page)
    except WeComError as exc:
        logger.warning("sidebar of tenant %s: no JS-SDK ticket: %s", tenant_id, exc)
        js, error = None, "WeCom gave no JS-SDK ticket; try again in a moment."
    context = {
        "tenant": config.tenant,
        "js": mark_safe(json.dumps(js).replace("<", "\\u003c")) if js else "null",  # noqa: S308 (JSON, < escaped)
        "error": error,
        "sdk_scripts": wecom_settings.JSSDK_SCRIPTS,
        "customer_url": reverse("wecom_integration:sidebar-customer", args=[tenant_id, "ID"]),
        "group_url": reverse("wecom_integration:sidebar-group", args=[tenant_id, "ID"]),
    }
    return render(request, "wecom_integration/sidebar/page.html", context)


def customer(request, tenant_id, external_userid):
    """What the system knows of one customer: the mirror, follow users and remarks, groups, the linked member
    account, the latest callbacks about them, and the host's panels."""
    config = _member_tenant(request, tenant_id)
    if config is None:
        raise PermissionDenied
    contact = (
        ExternalContact.objects.filter(tenant_id=tenant_id, external_userid=external_userid)
        .select_related("linked_user")
        .first()
    )
    groups = CustomerGroup.objects.filter(
        tenant_id=tenant_id, dismissed=False,
        pk__in=CustomerGroupMember.objects.filter(userid=external_userid).values("group_id"),
    ).order_by("name")
    events = CallbackEvent.objects.filter(tenant_id=tenant_id, kind="customers", subject=external_userid).order_by(
        "-received_at"
    )[:5]
    panels = get_adapter(request).sidebar_panels(request, config.tenant, contact) if contact else []
    follow_users = list(contact.follow_users.filter(removed=False).order_by("add_time")) if contact else []
    # The corp tags each member put on the customer, by name and in WeCom's order.
    library = {t.tag_id: t for t in tag_names(tenant_id, {t for f in follow_users for t in f.tag_ids})}
    for follow in follow_users:
        follow.tags = [library[t] for t in follow.tag_ids if t in library]
    context = {
        "tenant": config.tenant,
        "external_userid": external_userid,
        "contact": contact,
        "follow_users": follow_users,
        "groups": groups,
        "events": events,
        "panels": panels,
    }
    return render(request, "wecom_integration/sidebar/customer.html", context)


def group(request, tenant_id, chat_id):
    """One customer group: name, owner, members and how they joined."""
    config = _member_tenant(request, tenant_id)
    if config is None:
        raise PermissionDenied
    found = CustomerGroup.objects.filter(tenant_id=tenant_id, chat_id=chat_id).first()
    members = found.members.order_by("type", "join_time") if found else []
    return render(request, "wecom_integration/sidebar/group.html",
                  {"tenant": config.tenant, "chat_id": chat_id, "group": found, "members": members})

"""Messaging in the admin: the message log (read-only), "send a test message" for a configuration, the
reply box for a conversation in the inbox, and the app's custom menu editor.

The three pages hang off the message log's admin URLs (the configuration admin is another module's):

- ``admin:wecom_integration_messagelog_send_test`` (args: WeComConfig pk)
- ``admin:wecom_integration_messagelog_menu`` (args: WeComConfig pk)
- ``admin:wecom_integration_messagelog_inbox_reply`` (args: tenant id, WeCom userid)
"""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from wecom_integration import converters  # noqa: F401  (registers the <wecomid:...> path converter)
from wecom_integration.client import WeComConfigError, WeComError
from wecom_integration.display import LabelledJSONAdmin, labelled
from wecom_integration.messaging import cards
from wecom_integration.messaging import menu as menu_service
from wecom_integration.messaging import services as messaging
from wecom_integration.models import InboxMessage, MessageLog, WeComConfig, WeComUser
from wecom_integration.scoping import TenantScopedAdminMixin, user_search_fields

TEMPLATE_DIR = "admin/wecom_integration/messaging"

# Shown in an empty editor: seed 000's chat menu shape, one click button and one group.
EXAMPLE_MENU = {
    "button": [
        {"type": "click", "name": "今日待办", "key": "TODO_TODAY"},
        {
            "name": "更多",
            "sub_button": [
                {"type": "click", "name": "联系客服", "key": "CONTACT_SUPPORT"},
                {"type": "view", "name": "帮助中心", "url": "https://example.com/help"},
            ],
        },
    ]
}


def _split_list(text):
    """Ids or names separated by commas, "|", spaces or new lines (and the Chinese comma)."""
    for separator in ("，", "|", "\n", " "):
        text = text.replace(separator, ",")
    return [item.strip() for item in text.split(",") if item.strip()]


class SendTestMessageForm(forms.Form):
    msgtype = forms.ChoiceField(
        label=_("message type"),
        choices=[
            ("text", _("Text")),
            ("markdown", _("Markdown")),
            ("image", _("Image (JPG or PNG)")),
            ("file", _("File")),
            ("button_interaction", _("Card with buttons")),
            ("text_notice", _("Text notice card")),
            ("template_card", _("Any template card (JSON)")),
        ],
        initial="text",
    )
    content = forms.CharField(
        label=_("content"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        help_text=_("At most 2048 bytes (about 680 Chinese characters). Not used for images and files."),
    )
    attachment = forms.FileField(label=_("file"), required=False, help_text=_("For images and files."))
    card_title = forms.CharField(label=_("card title"), required=False, help_text=_("For cards."))
    card_description = forms.CharField(label=_("card description"), required=False)
    card_url = forms.URLField(
        label=_("card link"),
        required=False,
        assume_scheme="https",
        help_text=_("Where the card leads when tapped; required for a text notice card."),
    )
    card_buttons = forms.CharField(
        label=_("card buttons"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 40}),
        help_text=_(
            "One button per line, at most 6: its text, or text|key (the key comes back with the click). "
            "A click shows the button's text as done, unless the host project decides otherwise."
        ),
    )
    card_json = forms.CharField(
        label=_("template card (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "cols": 80, "spellcheck": "false"}),
        help_text=_(
            'WeCom\'s template_card object, e.g. {"card_type": "vote_interaction", ...}: text_notice, news_notice, '
            "button_interaction, vote_interaction or multiple_interaction."
        ),
    )
    usernames = forms.CharField(
        label=_("users of this tenant"),
        required=False,
        help_text=_("Usernames separated by commas; sent to the WeCom member each is bound to."),
    )
    userids = forms.CharField(label=_("WeCom userids"), required=False)
    parties = forms.CharField(label=_("department ids"), required=False)
    tags = forms.CharField(label=_("tag ids"), required=False)
    to_all = forms.BooleanField(
        label=_("everyone"), required=False, help_text=_("Every member in the app's visible range (@all).")
    )

    def clean(self):
        data = super().clean()
        msgtype = data.get("msgtype")
        if msgtype is None:
            return data
        try:
            if msgtype in ("image", "file"):
                upload = data.get("attachment")
                if upload is None:
                    raise ValidationError(_("Choose a file to send."))
                factory = messaging.Message.image if msgtype == "image" else messaging.Message.file
                data["message"] = factory(filename=upload.name, content=upload.read())
            elif msgtype in CARD_CHOICES:
                data["message"] = messaging.Message.template_card(self._card(msgtype, data))
            else:
                factory = messaging.Message.text if msgtype == "text" else messaging.Message.markdown
                data["message"] = factory(data.get("content") or "")
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None
        recipients = {key: _split_list(data.get(key) or "") for key in ("usernames", "userids", "parties", "tags")}
        if not data.get("to_all") and not any(recipients.values()):
            raise ValidationError(_("Choose at least one receiver."))
        if data.get("to_all") and any(recipients.values()):
            raise ValidationError(_("Choose either everyone or some receivers, not both."))
        data["recipients"] = recipients
        return data

    def _card(self, msgtype, data):
        """The template card the card fields describe (checked by Message.template_card)."""
        if msgtype == "template_card":
            try:
                return json.loads(data.get("card_json") or "")
            except json.JSONDecodeError as exc:
                raise ValidationError(
                    _("This is not valid JSON (line %(line)d, column %(column)d: %(error)s)."),
                    params={"line": exc.lineno, "column": exc.colno, "error": exc.msg},
                ) from None
        title = {"title": data.get("card_title") or ""}
        if data.get("card_description"):
            title["desc"] = data["card_description"]
        card = {"card_type": msgtype, "main_title": title}
        if data.get("card_url"):
            card["card_action"] = {"type": 1, "url": data["card_url"]}
        elif msgtype == "text_notice":
            raise ValidationError(_("A text notice card needs a link."))
        if msgtype == "button_interaction":
            card["button_list"] = [
                {"text": text.strip(), "key": (key.strip() or f"button-{index}"), "style": 1}
                for index, (text, _bar, key) in enumerate(
                    (line.partition("|") for line in (data.get("card_buttons") or "").splitlines() if line.strip()),
                    start=1,
                )
            ]
        return card


CARD_CHOICES = ("button_interaction", "text_notice", "template_card")


class MenuForm(forms.Form):
    menu = forms.CharField(
        label=_("menu (JSON)"),
        widget=forms.Textarea(attrs={"rows": 24, "cols": 90, "spellcheck": "false", "class": "vLargeTextField"}),
        help_text=_(
            'WeCom\'s format: {"button": [...]}, 1 to 3 buttons, each a typed button or a group of 1 to 5 '
            "sub-buttons. Types: click, view, scancode_push, scancode_waitmsg, pic_sysphoto, "
            "pic_photo_or_album, pic_weixin, location_select, view_miniprogram."
        ),
    )

    def clean_menu(self):
        try:
            menu = json.loads(self.cleaned_data["menu"])
        except json.JSONDecodeError as exc:
            raise ValidationError(
                _("This is not valid JSON (line %(line)d, column %(column)d: %(error)s)."),
                params={"line": exc.lineno, "column": exc.colno, "error": exc.msg},
            ) from None
        menu_service.validate_menu(menu)
        return menu_service.normalize_menu(menu)


class InboxReplyForm(forms.Form):
    text = forms.CharField(
        label=_("reply"),
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        help_text=_("Sent as a text message from the app. At most 2048 bytes."),
    )

    def clean_text(self):
        text = self.cleaned_data["text"]
        try:
            messaging.Message.text(text)
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None
        return text


def _pretty(menu):
    return json.dumps(menu, ensure_ascii=False, indent=2)


@admin.register(MessageLog)
class MessageLogAdmin(LabelledJSONAdmin, TenantScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "tenant",
        "msgtype",
        "summary",
        "recipients",
        "status",
        "invalid_count",
        "sender",
        "source",
        "recalled_at",
    )
    list_filter = ("status", "msgtype", "source")
    search_fields = ("touser", "toparty", "totag", "errmsg", *user_search_fields("sender"))
    list_select_related = ("tenant", "sender", "recalled_by")
    date_hierarchy = "created_at"
    tenant_admin_can_add = False
    fields = (
        "tenant",
        "created_at",
        "sender",
        "source",
        "msgtype",
        "pretty_content",
        "touser",
        "toparty",
        "totag",
        "status",
        "msgids",
        "invalid_users",
        "out_of_range_users",
        "visible_range_advice",
        "invalid_parties",
        "invalid_tags",
        "errcode",
        "errmsg",
        "failure",
        "calls",
        "task_id",
        "card_clicks",
        "recalled_at",
        "recalled_by",
    )
    readonly_fields = fields
    actions = ["recall_messages"]

    # A log is what happened: nobody writes it by hand.
    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Recall from WeCom (sent in the last 24 hours)"))
    def recall_messages(self, request, queryset):
        """Recall each chosen message (message/recall), recording who did it; a message WeCom would not
        recall (older than 24 hours, never delivered, already recalled) is named and left alone.
        https://developer.work.weixin.qq.com/document/path/94867"""
        recalled = 0
        for log in queryset.select_related("tenant"):
            if not (request.user.is_superuser or self.allowed_tenant(request, log.tenant_id)):
                raise PermissionDenied
            try:
                cards.recall(log, request.user)
            except cards.RecallRefused as exc:
                messages.warning(
                    request, gettext("Message #%(id)s: %(reason)s") % {"id": log.pk, "reason": exc.messages[0]}
                )
            except messaging.NotConfigured as exc:
                messages.error(request, exc.message)
            except WeComConfigError as exc:
                messages.error(request, exc.admin_message)
            except WeComError as exc:
                messages.error(
                    request,
                    gettext("WeCom refused to recall message #%(id)s (errcode %(errcode)s).")
                    % {"id": log.pk, "errcode": exc.errcode},
                )
            else:
                recalled += 1
        if recalled:
            messages.success(
                request,
                ngettext("%(count)d message recalled.", "%(count)d messages recalled.", recalled) % {"count": recalled},
            )

    @admin.display(description=_("card clicks"))
    def card_clicks(self, obj):
        if not obj.task_id:
            return "-"
        count = obj.clicks.count()
        url = reverse("admin:wecom_integration_cardclick_changelist") + "?" + urlencode({"task_id": obj.task_id})
        return format_html(
            '<a href="{}">{}</a>', url, ngettext("%(count)d click", "%(count)d clicks", count) % {"count": count}
        )

    @admin.display(description=_("message"))
    def summary(self, obj):
        return Truncator(messaging.summarize(obj.msgtype, obj.content.get(obj.msgtype) or {})).chars(60)

    @admin.display(description=_("to"))
    def recipients(self, obj):
        if obj.touser == messaging.ALL:
            return gettext("everyone")
        users, parties, tags = (
            len(joined.split("|")) if joined else 0 for joined in (obj.touser, obj.toparty, obj.totag)
        )
        parts = []
        if users:
            parts.append(ngettext("%(count)d user", "%(count)d users", users) % {"count": users})
        if parties:
            parts.append(ngettext("%(count)d department", "%(count)d departments", parties) % {"count": parties})
        if tags:
            parts.append(ngettext("%(count)d tag", "%(count)d tags", tags) % {"count": tags})
        return ", ".join(parts)

    @admin.display(description=_("invalid"))
    def invalid_count(self, obj):
        return len(obj.invalid_users) + len(obj.invalid_parties) + len(obj.invalid_tags)

    @admin.display(description=_("visible range"))
    def visible_range_advice(self, obj):
        if not obj.out_of_range_users:
            return "-"
        return gettext(
            "%(count)d receivers are members of the company but outside the app's visible range. Add them, or "
            "their departments, to the app's visible range (可见范围) in the WeCom admin."
        ) % {"count": len(obj.out_of_range_users)}

    @admin.display(description=_("content"))
    def pretty_content(self, obj):
        return labelled(obj.content)

    @admin.display(description=_("what went wrong"))
    def failure(self, obj):
        if obj.status in (MessageLog.Status.SENT, MessageLog.Status.QUEUED) or messaging.is_success(obj):
            return "-"
        return messaging.describe_failure(obj)

    # Pages ---------------------------------------------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        view = self.admin_site.admin_view
        return [
            path("send-test/<path:config_id>/", view(self.send_test_view), name="%s_%s_send_test" % info),
            path("menu/<path:config_id>/", view(self.menu_view), name="%s_%s_menu" % info),
            path(
                "reply/<int:tenant_id>/<wecomid:wecom_userid>/",
                view(self.inbox_reply_view),
                name="%s_%s_inbox_reply" % info,
            ),
        ] + super().get_urls()

    def _config(self, request, config_id):
        """The configuration if this user administers its tenant, else 403/404 (the configuration
        admin's own scoping)."""
        config_admin = self.admin_site._registry.get(WeComConfig)
        if config_admin is None:  # pragma: no cover - the configuration admin is always registered
            raise PermissionDenied
        return config_admin.tenant_admin_view(request, config_id, "change")

    def _context(self, request, title, **extra):
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "config_opts": WeComConfig._meta,
            "title": title,
            **extra,
        }

    def send_test_view(self, request, config_id):
        """Send a message of any supported type to chosen users, departments, tags or everyone."""
        config = self._config(request, config_id)
        log = None
        if request.method == "POST":
            form = SendTestMessageForm(request.POST, request.FILES)
            if form.is_valid():
                recipients = form.cleaned_data["recipients"]
                message = form.cleaned_data["message"]
                try:
                    log = messaging.send(
                        config.tenant,
                        message,
                        users=recipients["userids"],
                        parties=recipients["parties"],
                        tags=recipients["tags"],
                        usernames=recipients["usernames"],
                        to_all=form.cleaned_data["to_all"],
                        sender=request.user,
                        source="admin",
                    )
                except messaging.NotConfigured as exc:
                    form.add_error(None, exc.message)
                except ValidationError as exc:
                    form.add_error(None, exc.messages)
                else:
                    self._report(request, log)
        else:
            form = SendTestMessageForm()
        context = self._context(
            request,
            _("Send a test message"),
            config=config,
            form=form,
            log=log,
            log_url=reverse("admin:wecom_integration_messagelog_change", args=[log.pk]) if log else None,
            invalid_usernames=(
                messaging.usernames_for(config.tenant, log.invalid_users) if log and log.invalid_users else []
            ),
        )
        return TemplateResponse(request, f"{TEMPLATE_DIR}/send_test.html", context)

    def _report(self, request, log):
        if messaging.is_success(log) and log.status == MessageLog.Status.SENT:
            messages.success(request, gettext("Message sent (msgid %(msgid)s).") % {"msgid": ", ".join(log.msgids)})
        elif messaging.is_success(log):
            messages.warning(
                request,
                gettext("Message sent, but WeCom could not reach %(count)d receivers.")
                % {"count": len(log.invalid_users) + len(log.invalid_parties) + len(log.invalid_tags)},
            )
            if log.out_of_range_users:
                messages.warning(request, self.visible_range_advice(log))
        else:
            messages.error(request, messaging.describe_failure(log))

    def menu_view(self, request, config_id):
        """Edit the app's menu as JSON, save it, push it to WeCom (menu/create), read WeCom's back."""
        config = self._config(request, config_id)
        remote = None
        action = request.POST.get("action", "save") if request.method == "POST" else None
        if action in ("read", "delete"):
            # Keep what is in the editor, saved or not.
            form = MenuForm(initial={"menu": request.POST.get("menu") or _pretty(config.menu or EXAMPLE_MENU)})
            try:
                if action == "delete":
                    menu_service.delete_menu(config)
                    messages.success(request, gettext("The menu was removed from WeCom."))
                remote = menu_service.read_menu(config)
            except WeComConfigError as exc:
                messages.error(request, exc.admin_message)
            except WeComError as exc:
                messages.error(request, gettext("WeCom answered: %(error)s") % {"error": exc})
        elif action in ("save", "push"):
            form = MenuForm(request.POST)
            if form.is_valid():
                menu = form.cleaned_data["menu"]
                if action == "save":
                    config.menu = menu
                    config.save(update_fields=["menu", "updated_at"])
                    messages.success(request, gettext("The menu was saved; push it to show it in WeCom."))
                    return HttpResponseRedirect(request.path)
                try:
                    menu_service.push_menu(config, menu)
                    remote = menu_service.read_menu(config)
                except WeComConfigError as exc:
                    messages.error(request, exc.admin_message)
                except WeComError as exc:
                    messages.error(request, gettext("WeCom refused the menu: %(error)s") % {"error": exc})
                else:
                    messages.success(request, gettext("The menu was saved and pushed to WeCom."))
        else:
            form = MenuForm(initial={"menu": _pretty(config.menu or EXAMPLE_MENU)})
        context = self._context(
            request,
            _("App menu"),
            config=config,
            form=form,
            is_example=not config.menu,
            remote=_pretty(remote) if remote is not None else None,
            in_sync=remote is not None and remote == menu_service.normalize_menu(config.menu or {"button": []}),
        )
        return TemplateResponse(request, f"{TEMPLATE_DIR}/menu.html", context)

    def inbox_reply_view(self, request, tenant_id, wecom_userid):
        """Answer an employee who wrote to the app; the reply joins their conversation."""
        if not self.allowed_tenant(request, tenant_id) or not (
            request.user.is_superuser or self._is_tenant_admin(request)
        ):
            raise PermissionDenied
        config = WeComConfig.objects.filter(tenant_id=tenant_id).select_related("tenant").first()
        if config is None:
            messages.error(request, messaging.NotConfigured().message)
        if request.method == "POST" and config is not None:
            form = InboxReplyForm(request.POST)
            if form.is_valid():
                try:
                    log, _message = messaging.reply_to_inbox(
                        config.tenant, wecom_userid, form.cleaned_data["text"], sender=request.user
                    )
                except (messaging.NotConfigured, ValidationError) as exc:
                    form.add_error(None, getattr(exc, "message", None) or exc.messages)
                else:
                    if messaging.is_success(log) and log.status == MessageLog.Status.SENT:
                        messages.success(request, gettext("Reply sent."))
                        return HttpResponseRedirect(request.path)
                    messages.error(request, messaging.describe_failure(log))
        else:
            form = InboxReplyForm()
        wecom_user = WeComUser.objects.filter(tenant_id=tenant_id, userid__iexact=wecom_userid).first()
        if wecom_user is not None:
            wecom_userid = wecom_user.userid
        recent = list(
            InboxMessage.objects.filter(tenant_id=tenant_id, wecom_userid=wecom_userid).order_by("-created_at", "-id")[
                :20
            ]
        )[::-1]
        name = wecom_user.name if wecom_user is not None and wecom_user.name else wecom_userid
        context = self._context(
            request,
            gettext("Reply to %(name)s") % {"name": name},
            form=form,
            wecom_userid=wecom_userid,
            recent=recent,
            conversation_url=_conversation_url(tenant_id, wecom_userid),
        )
        return TemplateResponse(request, f"{TEMPLATE_DIR}/inbox_reply.html", context)


def _conversation_url(tenant_id, wecom_userid):
    """The inbox's conversation page, when the inbox admin provides one."""
    from django.urls import NoReverseMatch

    try:
        return reverse("admin:wecom_integration_inboxmessage_conversation", args=[tenant_id, wecom_userid])
    except NoReverseMatch:
        return None

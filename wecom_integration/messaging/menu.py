"""The app's custom menu (seed 000's chat menus): check it, push it with ``menu/create``, read it back
with ``menu/get``.

The menu is kept in ``WeComConfig.menu`` as WeCom's own JSON, ``{"button": [...]}``, so what the admin
edits is exactly what is sent. https://developer.work.weixin.qq.com/document/path/90231
"""

from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from wecom_integration.client import WeComError, client_for

__all__ = ["BUTTON_TYPES", "delete_menu", "normalize_menu", "push_menu", "read_menu", "validate_menu"]

# Limits from https://developer.work.weixin.qq.com/document/path/90231
MAX_BUTTONS = 3
MAX_SUB_BUTTONS = 5
TOP_NAME_MAX_BYTES = 16
SUB_NAME_MAX_BYTES = 40
KEY_MAX_BYTES = 128
URL_MAX_BYTES = 1024

#: Button type -> the fields it needs besides ``name``.
BUTTON_TYPES = {
    "click": ("key",),
    "view": ("url",),
    "scancode_push": ("key",),
    "scancode_waitmsg": ("key",),
    "pic_sysphoto": ("key",),
    "pic_photo_or_album": ("key",),
    "pic_weixin": ("key",),
    "location_select": ("key",),
    "view_miniprogram": ("pagepath", "appid"),
}
BUTTON_FIELDS = ("type", "name", "key", "url", "pagepath", "appid")

# WeCom's errcode for "the app has no menu" when reading it back.
MENU_NOT_FOUND = 46003


def _nbytes(text):
    return len(text.encode("utf-8"))


def _button_errors(button, where, top_level):
    """The problems of one button, each a translated sentence naming ``where`` it is."""
    errors = []
    if not isinstance(button, dict):
        return [_("%(where)s must be an object.") % {"where": where}]
    name = button.get("name")
    limit = TOP_NAME_MAX_BYTES if top_level else SUB_NAME_MAX_BYTES
    if not isinstance(name, str) or not name.strip():
        errors.append(_("%(where)s needs a name.") % {"where": where})
    elif _nbytes(name) > limit:
        errors.append(
            _("%(where)s: the name %(name)s is longer than %(limit)d bytes (UTF-8).")
            % {"where": where, "name": name, "limit": limit}
        )
    subs = button.get("sub_button")
    if top_level and subs:
        if not isinstance(subs, list) or len(subs) > MAX_SUB_BUTTONS:
            errors.append(_("%(where)s has 1 to %(max)d sub-buttons.") % {"where": where, "max": MAX_SUB_BUTTONS})
            return errors
        for index, sub in enumerate(subs, 1):
            sub_where = _("%(where)s, sub-button %(index)d") % {"where": where, "index": index}
            errors.extend(_button_errors(sub, sub_where, top_level=False))
        return errors
    if subs and not top_level:
        errors.append(_("%(where)s: sub-buttons cannot have sub-buttons.") % {"where": where})
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        errors.append(
            _("%(where)s: the type must be one of %(types)s.") % {"where": where, "types": ", ".join(BUTTON_TYPES)}
        )
        return errors
    for field in BUTTON_TYPES[kind]:
        value = button.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(
                _("%(where)s: a %(type)s button needs %(field)s.") % {"where": where, "type": kind, "field": field}
            )
    key = button.get("key")
    if isinstance(key, str) and _nbytes(key) > KEY_MAX_BYTES:
        errors.append(
            _("%(where)s: the key is longer than %(limit)d bytes.") % {"where": where, "limit": KEY_MAX_BYTES}
        )
    url = button.get("url")
    if kind == "view" and isinstance(url, str) and url:
        if _nbytes(url) > URL_MAX_BYTES:
            errors.append(
                _("%(where)s: the link is longer than %(limit)d bytes.") % {"where": where, "limit": URL_MAX_BYTES}
            )
        if urlsplit(url).scheme not in ("http", "https"):
            errors.append(_("%(where)s: the link must start with http:// or https://.") % {"where": where})
    return errors


def validate_menu(menu):
    """Raise ``ValidationError`` (one message per problem) unless ``menu`` is a menu WeCom accepts:
    ``{"button": [...]}`` with 1 to 3 buttons, each either a typed button or a group of 1 to 5 typed
    sub-buttons. https://developer.work.weixin.qq.com/document/path/90231
    """
    if not isinstance(menu, dict) or not isinstance(menu.get("button"), list):
        raise ValidationError(_('The menu must be an object with a "button" list.'), code="menu_shape")
    buttons = menu["button"]
    errors = []
    if not 1 <= len(buttons) <= MAX_BUTTONS:
        errors.append(_("The menu has 1 to %(max)d buttons.") % {"max": MAX_BUTTONS})
    for index, button in enumerate(buttons, 1):
        errors.extend(_button_errors(button, _("Button %(index)d") % {"index": index}, top_level=True))
    if errors:
        raise ValidationError([ValidationError(str(message), code="menu") for message in errors])


def normalize_menu(menu):
    """``menu`` with only the fields WeCom knows (menu/get adds ``sub_button: []`` and the like)."""
    buttons = []
    for button in menu.get("button", []):
        cleaned = {key: button[key] for key in BUTTON_FIELDS if button.get(key) not in (None, "")}
        subs = button.get("sub_button") or []
        if subs:
            cleaned.pop("type", None)
            cleaned["sub_button"] = [
                {key: sub[key] for key in BUTTON_FIELDS if sub.get(key) not in (None, "")} for sub in subs
            ]
        buttons.append(cleaned)
    return {"button": buttons}


def push_menu(config, menu=None):
    """Check ``menu`` (default: the one saved in ``config``), save it in ``config`` and replace the
    app's menu in WeCom with it. Raises ``ValidationError`` before sending anything if it is invalid,
    and the client's ``WeComError`` if WeCom refuses it (the menu is still saved then).

    https://developer.work.weixin.qq.com/document/path/90231
    """
    menu = config.menu if menu is None else menu
    validate_menu(menu)
    menu = normalize_menu(menu)
    if config.menu != menu:
        config.menu = menu
        config.save(update_fields=["menu", "updated_at"])
    client_for(config, "app").menu.create(config.agent_id, menu)
    return menu


def read_menu(config):
    """The app's menu as WeCom has it now, normalised; ``{"button": []}`` when the app has none.

    https://developer.work.weixin.qq.com/document/path/90232
    """
    try:
        answer = client_for(config, "app").menu.get(config.agent_id)
    except WeComError as exc:
        if exc.errcode == MENU_NOT_FOUND:
            return {"button": []}
        raise
    return normalize_menu(answer)


def delete_menu(config):
    """Remove the app's menu in WeCom (the saved copy stays, to be pushed again).

    https://developer.work.weixin.qq.com/document/path/90233
    """
    client_for(config, "app").menu.delete(config.agent_id)

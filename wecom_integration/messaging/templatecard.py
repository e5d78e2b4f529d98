"""WeCom's template cards (模板卡片消息): the five card types and the rules message/send checks them by.

:func:`card_errors` lists what is wrong with a ``template_card`` object (empty when nothing is), as
translated ``ValidationError``; :func:`clicked_choice` reads what a member chose from a card and the
click's event, for the default answer to a click (the button's text shown as done).

Rules from https://developer.work.weixin.qq.com/document/path/90236 (发送应用消息, 模板卡片消息) and the
card structures of https://developer.work.weixin.qq.com/document/path/94888 (更新模版卡片消息). Where the
page gives a length as a recommendation ("建议不超过 N 个字") it is not checked; hard limits (list sizes,
key and id lengths, the task_id's alphabet) are.
"""

from __future__ import annotations

import re
import secrets

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

TEXT_NOTICE = "text_notice"
NEWS_NOTICE = "news_notice"
BUTTON_INTERACTION = "button_interaction"
VOTE_INTERACTION = "vote_interaction"
MULTIPLE_INTERACTION = "multiple_interaction"
CARD_TYPES = (TEXT_NOTICE, NEWS_NOTICE, BUTTON_INTERACTION, VOTE_INTERACTION, MULTIPLE_INTERACTION)
#: Cards whose clicks come back as template_card_event and which message/send answers a response_code for.
INTERACTIVE = frozenset((BUTTON_INTERACTION, VOTE_INTERACTION, MULTIPLE_INTERACTION))

# Limits from doc 90236 (bytes are UTF-8 bytes).
TASK_ID_MAX_BYTES = 128
TASK_ID_RE = re.compile(r"[0-9A-Za-z_\-@]+")
KEY_MAX_BYTES = 1024
OPTION_ID_MAX_BYTES = 128
MAX_BUTTONS = 6
MAX_ACTIONS = 3
MAX_HORIZONTAL = 6
MAX_JUMPS = 3
MAX_VERTICAL = 4
MAX_SELECTION_OPTIONS = 10
MAX_CHECKBOX_OPTIONS = 20
MAX_SELECTS = 3
BUTTON_STYLES = (1, 2, 3, 4)
SOURCE_COLOURS = (0, 1, 2, 3)
ASPECT_RATIO_RANGE = (1.3, 2.25)


def new_task_id(prefix="card"):
    """A task_id WeCom accepts (letters, digits, ``_-@``, ≤ 128 bytes) and no app has used."""
    return f"{prefix}-{secrets.token_hex(12)}"


def _error(message, code="invalid_card", **params):
    return ValidationError(message, code=code, params=params or None)


def _blank(value):
    return not isinstance(value, str) or not value.strip()


def _int_in(value, allowed, default):
    if value in (None, ""):
        value = default
    return isinstance(value, int) and not isinstance(value, bool) and value in allowed


class _Check:
    """Collects the errors of one card."""

    def __init__(self, card):
        self.card = card
        self.errors = []

    def add(self, message, **params):
        self.errors.append(_error(message, **params))

    def required(self, value, field):
        if _blank(value):
            self.add(_("The card's %(field)s is required."), field=field)
            return False
        return True

    def obj(self, field, required=False):
        value = self.card.get(field)
        if value is None:
            if required:
                self.add(_("The card's %(field)s is required."), field=field)
            return None
        if not isinstance(value, dict):
            self.add(_("The card's %(field)s must be an object."), field=field)
            return None
        return value

    def items(self, value, field, low, high, required=False):
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.add(_("The card's %(field)s must be a list of objects."), field=field)
            return []
        if (required or value) and not low <= len(value) <= high:
            self.add(
                _("The card's %(field)s has %(low)d to %(high)d entries, not %(count)d."),
                field=field, low=low, high=high, count=len(value),
            )
        return value

    def key(self, value, field, seen=None, limit=KEY_MAX_BYTES):
        if not self.required(value, field):
            return
        if len(value.encode("utf-8")) > limit:
            self.add(_("The card's %(field)s is longer than %(limit)d bytes."), field=field, limit=limit)
        if seen is not None:
            if value in seen:
                self.add(_("The card's %(field)s %(value)s is used twice."), field=field, value=value)
            seen.add(value)

    def link(self, value, field, allowed):
        """A jump of type 0 (none, where allowed), 1 (url) or 2 (mini program, appid)."""
        kind = value.get("type", 0)
        if not _int_in(kind, allowed, 0):
            self.add(_("The card's %(field)s.type must be one of %(allowed)s."), field=field,
                     allowed=", ".join(map(str, allowed)))
            return
        if kind == 1:
            self.required(value.get("url"), f"{field}.url")
        elif kind == 2:
            self.required(value.get("appid"), f"{field}.appid")


def card_errors(card):
    """Everything wrong with the ``template_card`` object ``card`` (a list of ValidationError).

    https://developer.work.weixin.qq.com/document/path/90236
    """
    if not isinstance(card, dict):
        return [_error(_("A template card is a JSON object."))]
    check = _Check(card)
    card_type = card.get("card_type")
    if card_type not in CARD_TYPES:
        check.add(_("Unknown card type %(card_type)s; WeCom's are %(types)s."), card_type=str(card_type),
                  types=", ".join(CARD_TYPES))
        return check.errors
    _check_task_id(check, card_type)
    _check_common(check, card_type)
    {
        TEXT_NOTICE: _check_text_notice,
        NEWS_NOTICE: _check_news_notice,
        BUTTON_INTERACTION: _check_button_interaction,
        VOTE_INTERACTION: _check_vote_interaction,
        MULTIPLE_INTERACTION: _check_multiple_interaction,
    }[card_type](check)
    return check.errors


def _check_task_id(check, card_type):
    task_id = check.card.get("task_id")
    needed = card_type in INTERACTIVE or check.card.get("action_menu") is not None
    if task_id in (None, ""):
        if needed:
            check.add(_("This card needs a task_id (unique in the app)."))
        return
    if (not isinstance(task_id, str) or not TASK_ID_RE.fullmatch(task_id)
            or len(task_id.encode("utf-8")) > TASK_ID_MAX_BYTES):
        check.add(_("A task_id has at most %(max)d letters, digits, _, - and @."), max=TASK_ID_MAX_BYTES)


def _check_common(check, card_type):
    source = check.obj("source")
    if source is not None and not _int_in(source.get("desc_color"), SOURCE_COLOURS, 0):
        check.add(_("The card's source.desc_color is 0 to 3."))
    menu = check.obj("action_menu")
    if menu is not None:
        keys = set()
        for action in check.items(menu.get("action_list"), "action_menu.action_list", 1, MAX_ACTIONS, True):
            check.required(action.get("text"), "action_menu.action_list.text")
            check.key(action.get("key"), "action_menu.action_list.key", keys)
    main_title = check.obj("main_title")
    title = (main_title or {}).get("title")
    if card_type == TEXT_NOTICE:
        if _blank(title) and _blank(check.card.get("sub_title_text")):
            check.add(_("A text notice needs main_title.title or sub_title_text."))
    else:
        check.required(title, "main_title.title")
    check.obj("emphasis_content")
    quote = check.obj("quote_area")
    if quote is not None:
        check.link(quote, "quote_area", (0, 1, 2))
    for item in check.items(check.card.get("horizontal_content_list"), "horizontal_content_list", 0, MAX_HORIZONTAL):
        check.required(item.get("keyname"), "horizontal_content_list.keyname")
        kind = item.get("type", 0)
        needed = {1: "url", 2: "media_id", 3: "userid"}
        if not _int_in(kind, (0, 1, 2, 3), 0):
            check.add(_("The card's horizontal_content_list.type is 0 to 3."))
        elif kind in needed:
            check.required(item.get(needed[kind]), f"horizontal_content_list.{needed[kind]}")
    for jump in check.items(check.card.get("jump_list"), "jump_list", 0, MAX_JUMPS):
        check.required(jump.get("title"), "jump_list.title")
        check.link(jump, "jump_list", (0, 1, 2))
    action = check.obj("card_action", required=card_type in (TEXT_NOTICE, NEWS_NOTICE))
    if action is not None:
        # A notice card is a link as a whole: type 1 (url) or 2 (mini program); elsewhere 0 means none.
        allowed = (1, 2) if card_type in (TEXT_NOTICE, NEWS_NOTICE) else (0, 1, 2)
        if card_type in (TEXT_NOTICE, NEWS_NOTICE) and "type" not in action:
            check.add(_("The card's card_action.type is required (1 a link, 2 a mini program)."))
        else:
            check.link(action, "card_action", allowed)


def _check_text_notice(check):
    pass


def _check_news_notice(check):
    image = check.obj("card_image")
    area = check.obj("image_text_area")
    if image is None and area is None:
        check.add(_("A news notice needs card_image or image_text_area."))
    if image is not None:
        check.required(image.get("url"), "card_image.url")
        ratio = image.get("aspect_ratio")
        low, high = ASPECT_RATIO_RANGE
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, (int, float))
                                  or not low <= ratio <= high):
            check.add(_("The card's card_image.aspect_ratio is between 1.3 and 2.25."))
    if area is not None:
        check.required(area.get("image_url"), "image_text_area.image_url")
        check.link(area, "image_text_area", (0, 1, 2))
    for item in check.items(check.card.get("vertical_content_list"), "vertical_content_list", 0, MAX_VERTICAL):
        check.required(item.get("title"), "vertical_content_list.title")


def _options(check, options, field, high, id_limit=OPTION_ID_MAX_BYTES):
    ids = set()
    for option in check.items(options, field, 1, high, True):
        check.key(option.get("id"), f"{field}.id", ids, id_limit)
        check.required(option.get("text"), f"{field}.text")


def _check_button_interaction(check):
    keys = set()
    for button in check.items(check.card.get("button_list"), "button_list", 1, MAX_BUTTONS, True):
        check.required(button.get("text"), "button_list.text")
        if not _int_in(button.get("style"), BUTTON_STYLES, 1):
            check.add(_("The card's button_list.style is 1 to 4."))
        kind = button.get("type", 0)
        if not _int_in(kind, (0, 1), 0):
            check.add(_("The card's button_list.type is 0 (a callback) or 1 (a link)."))
        elif kind == 1:
            check.required(button.get("url"), "button_list.url")
        else:
            check.key(button.get("key"), "button_list.key", keys)
    selection = check.obj("button_selection")
    if selection is not None:
        check.key(selection.get("question_key"), "button_selection.question_key")
        _options(check, selection.get("option_list"), "button_selection.option_list", MAX_SELECTION_OPTIONS)


def _submit_button(check):
    submit = check.obj("submit_button", required=True)
    if submit is not None:
        check.required(submit.get("text"), "submit_button.text")
        check.key(submit.get("key"), "submit_button.key")


def _check_vote_interaction(check):
    checkbox = check.obj("checkbox", required=True)
    if checkbox is not None:
        check.key(checkbox.get("question_key"), "checkbox.question_key")
        _options(check, checkbox.get("option_list"), "checkbox.option_list", MAX_CHECKBOX_OPTIONS)
        if not _int_in(checkbox.get("mode"), (0, 1), 0):
            check.add(_("The card's checkbox.mode is 0 (one choice) or 1 (several)."))
    _submit_button(check)


def _check_multiple_interaction(check):
    questions = set()
    for select in check.items(check.card.get("select_list"), "select_list", 1, MAX_SELECTS, True):
        check.key(select.get("question_key"), "select_list.question_key", questions)
        _options(check, select.get("option_list"), "select_list.option_list", MAX_SELECTION_OPTIONS)
    _submit_button(check)


# Reading a click -----------------------------------------------------------------------------------------


def _option_texts(options, chosen):
    by_id = {str(o.get("id")): o.get("text", "") for o in options or () if isinstance(o, dict)}
    return [by_id.get(str(option_id), str(option_id)) for option_id in chosen]


def clicked_choice(card, event_key, selected_items=()):
    """What the member chose, in the card's own words: the clicked button's text, or the texts of the
    options submitted (vote and multiple choice cards), or ``""`` when the card does not say.

    ``selected_items`` is the event's ``[{"question_key": …, "option_ids": [...]}, …]``.
    """
    if not isinstance(card, dict):
        return ""
    for button in card.get("button_list") or ():
        if isinstance(button, dict) and button.get("key") == event_key:
            return str(button.get("text", ""))
    questions = {}
    if isinstance(card.get("checkbox"), dict):
        questions[card["checkbox"].get("question_key")] = card["checkbox"].get("option_list")
    if isinstance(card.get("button_selection"), dict):
        questions[card["button_selection"].get("question_key")] = card["button_selection"].get("option_list")
    for select in card.get("select_list") or ():
        if isinstance(select, dict):
            questions[select.get("question_key")] = select.get("option_list")
    texts = []
    for item in selected_items or ():
        texts += _option_texts(questions.get(item.get("question_key")), item.get("option_ids") or ())
    if texts:
        return "、".join(texts)
    submit = card.get("submit_button")
    if isinstance(submit, dict) and submit.get("key") == event_key:
        return str(submit.get("text", ""))
    return ""

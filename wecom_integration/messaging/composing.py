"""Composing an app message: the message types WeCom's message/send takes, each checked against WeCom's
limits (bytes, not characters; article counts; media sizes) before anything is sent.

https://developer.work.weixin.qq.com/document/path/90236
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from wecom_integration.client.api.message import MAX_NEWS_ARTICLES
from wecom_integration.client.base import RATE_LIMITED
from wecom_integration.messaging.templatecard import INTERACTIVE, card_errors, new_task_id

#: WeCom's "every member in the app's visible range".
ALL = "@all"

# Limits from https://developer.work.weixin.qq.com/document/path/90236 (bytes are UTF-8 bytes).
TEXT_MAX_BYTES = 2048
MARKDOWN_MAX_BYTES = 2048
TITLE_MAX_BYTES = 128
DESCRIPTION_MAX_BYTES = 512
URL_MAX_BYTES = 2048
BTNTXT_MAX_CHARS = 4
DUPLICATE_CHECK_MAX_INTERVAL = 4 * 3600
DUPLICATE_CHECK_DEFAULT_INTERVAL = 1800
# Media limits from https://developer.work.weixin.qq.com/document/path/90253
MEDIA_MIN_BYTES = 6
MEDIA_MAX_BYTES = {"image": 10 * 1024 * 1024, "file": 20 * 1024 * 1024}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
USERID_MAX_CHARS = 64

# WeCom's errcode when every recipient of a call was invalid; the other recipients' calls still count.
ALL_RECIPIENTS_INVALID = 81013
# WeCom keeps an uploaded file 3 days (doc 90253); a delivery resumed later uploads it again, with an hour
# to spare for the batches still to go.
MEDIA_LIFETIME = 3 * 86400
MEDIA_REUPLOAD_AFTER = MEDIA_LIFETIME - 3600
RATE_LIMIT_ERRCODES = RATE_LIMITED
# The keys of a message/send body that describe the message itself (the rest are recipients).
MESSAGE_OPTION_KEYS = ("safe", "enable_duplicate_check", "duplicate_check_interval")
# Bound variables per query when resolving usernames: below SQLite's oldest limit of 999.
LOOKUP_CHUNK = 900


class NotConfigured(Exception):
    """The tenant has no (enabled) WeCom configuration, so nothing can be sent."""

    def __init__(self, message=None):
        self.message = message or gettext(
            "WeCom is not configured yet; please configure WeCom (企业微信尚未配置,请配置企业微信)."
        )
        super().__init__(self.message)


class RecipientError(ValidationError):
    """The recipients cannot be used (unknown usernames, nobody bound); ``resolution`` says who is who."""

    def __init__(self, message, code, params, resolution):
        super().__init__(message, code=code, params=params)
        self.resolution = resolution


def _utf8_len(text):
    return len(text.encode("utf-8"))


def _check_bytes(value, limit, label, errors):
    if _utf8_len(value) > limit:
        errors.append(
            ValidationError(
                _("%(label)s is %(size)d bytes long; WeCom accepts at most %(limit)d bytes (UTF-8)."),
                code="too_long",
                params={"label": label, "size": _utf8_len(value), "limit": limit},
            )
        )


@dataclass(frozen=True)
class Attachment:
    """A file to upload with ``media/upload`` before an image or file message is sent."""

    filename: str
    content: bytes

    def to_json(self):
        """A JSON-safe form for a Celery task argument."""
        return {"filename": self.filename, "content": base64.b64encode(self.content).decode("ascii")}

    @classmethod
    def from_json(cls, data):
        return cls(data["filename"], base64.b64decode(data["content"]))


@dataclass(frozen=True)
class Message:
    """What to send, independent of whom to: WeCom's ``msgtype`` and its object, plus options.

    Build one with the class methods (``Message.text("…")``, ``Message.textcard(…)`` …); they check
    WeCom's limits and raise ``ValidationError`` with a translated message when one is exceeded.
    ``enable_duplicate_check`` makes WeCom drop the same message to the same recipients within
    ``duplicate_check_interval`` seconds (at most 4 hours).

    https://developer.work.weixin.qq.com/document/path/90236
    """

    msgtype: str
    body: dict
    attachment: Attachment | None = None
    safe: bool = False
    enable_duplicate_check: bool = False
    duplicate_check_interval: int = DUPLICATE_CHECK_DEFAULT_INTERVAL

    def __post_init__(self):
        self.validate()

    # Constructors ---------------------------------------------------------------------------------

    @classmethod
    def text(cls, content, **options):
        """A text message of at most 2,048 UTF-8 bytes."""
        return cls("text", {"content": content}, **options)

    @classmethod
    def markdown(cls, content, **options):
        """A markdown message (WeCom's subset) of at most 2,048 UTF-8 bytes; never ``safe``."""
        return cls("markdown", {"content": content}, **options)

    @classmethod
    def textcard(cls, title, description, url, btntxt="", **options):
        """A card with a title, a description (WeCom's small HTML subset) and a link."""
        body = {"title": title, "description": description, "url": url}
        if btntxt:
            body["btntxt"] = btntxt
        return cls("textcard", body, **options)

    @classmethod
    def news(cls, articles, **options):
        """1 to 8 articles of {title, description, url, picurl}."""
        keys = ("title", "description", "url", "picurl", "appid", "pagepath")
        cleaned = [{key: article[key] for key in keys if article.get(key)} for article in articles]
        return cls("news", {"articles": cleaned}, **options)

    @classmethod
    def template_card(cls, card, **options):
        """A template card (模板卡片): ``card`` is WeCom's ``template_card`` object, one of the five
        ``card_type`` (text_notice, news_notice, button_interaction, vote_interaction,
        multiple_interaction), checked against WeCom's rules (messaging/templatecard.py). An interactive
        card without a ``task_id`` gets a new one; clicks on it come back with that id."""
        card = dict(card) if isinstance(card, dict) else card
        if isinstance(card, dict) and card.get("card_type") in INTERACTIVE and not card.get("task_id"):
            card["task_id"] = new_task_id()
        return cls("template_card", card, **options)

    @property
    def task_id(self):
        """The card's task_id (what its clicks come back with); "" for other messages."""
        return (self.body.get("task_id") or "") if self.msgtype == "template_card" else ""

    @classmethod
    def image(cls, media_id=None, *, filename=None, content=None, **options):
        """A JPG or PNG image: an existing ``media_id``, or ``filename`` and ``content`` to upload."""
        return cls._media("image", media_id, filename, content, options)

    @classmethod
    def file(cls, media_id=None, *, filename=None, content=None, **options):
        """A file: an existing ``media_id``, or ``filename`` and ``content`` to upload."""
        return cls._media("file", media_id, filename, content, options)

    @classmethod
    def _media(cls, msgtype, media_id, filename, content, options):
        if media_id:
            return cls(msgtype, {"media_id": media_id}, **options)
        if not filename or content is None:
            raise ValidationError(_("Give a media_id or a file to upload."), code="no_media")
        if hasattr(content, "read"):
            content = content.read()
        return cls(msgtype, {}, attachment=Attachment(os.path.basename(filename), bytes(content)), **options)

    # Checks ---------------------------------------------------------------------------------------

    def validate(self):
        errors = []
        check = getattr(self, f"_validate_{self.msgtype}", None)
        if check is None:
            raise ValidationError(
                _("Unsupported message type %(msgtype)s."), code="msgtype", params={"msgtype": self.msgtype}
            )
        check(errors)
        if self.enable_duplicate_check and not 0 < int(self.duplicate_check_interval) <= DUPLICATE_CHECK_MAX_INTERVAL:
            errors.append(
                ValidationError(
                    _("The duplicate check interval must be between 1 and %(max)d seconds."),
                    code="duplicate_check_interval",
                    params={"max": DUPLICATE_CHECK_MAX_INTERVAL},
                )
            )
        if errors:
            raise ValidationError(errors)

    def _validate_text(self, errors):
        content = self.body.get("content") or ""
        if not content.strip():
            errors.append(ValidationError(_("The message content is empty."), code="empty"))
        _check_bytes(content, TEXT_MAX_BYTES, gettext("The content"), errors)

    def _validate_markdown(self, errors):
        self._validate_text(errors)

    def _validate_textcard(self, errors):
        for key, limit, label in (
            ("title", TITLE_MAX_BYTES, gettext("The title")),
            ("description", DESCRIPTION_MAX_BYTES, gettext("The description")),
            ("url", URL_MAX_BYTES, gettext("The link")),
        ):
            value = self.body.get(key) or ""
            if not value.strip():
                errors.append(ValidationError(_("%(label)s is required."), code="required", params={"label": label}))
            _check_bytes(value, limit, label, errors)
        if len(self.body.get("btntxt", "")) > BTNTXT_MAX_CHARS:
            errors.append(
                ValidationError(
                    _("The button text has at most %(max)d characters."),
                    code="too_long",
                    params={"max": BTNTXT_MAX_CHARS},
                )
            )

    def _validate_news(self, errors):
        articles = self.body.get("articles") or []
        if not 1 <= len(articles) <= MAX_NEWS_ARTICLES:
            errors.append(
                ValidationError(
                    _("A news message has 1 to %(max)d articles."), code="articles", params={"max": MAX_NEWS_ARTICLES}
                )
            )
        for article in articles:
            if not (article.get("title") or "").strip():
                errors.append(ValidationError(_("Every article needs a title."), code="required"))
            if not article.get("url") and not (article.get("appid") and article.get("pagepath")):
                errors.append(ValidationError(_("Every article needs a link."), code="required"))
            _check_bytes(article.get("title") or "", TITLE_MAX_BYTES, gettext("An article's title"), errors)
            _check_bytes(
                article.get("description") or "", DESCRIPTION_MAX_BYTES, gettext("An article's description"), errors
            )
            _check_bytes(article.get("url") or "", URL_MAX_BYTES, gettext("An article's link"), errors)

    def _validate_template_card(self, errors):
        errors.extend(card_errors(self.body))

    def _validate_image(self, errors):
        self._validate_media(errors)
        if self.attachment and not self.attachment.filename.lower().endswith(IMAGE_EXTENSIONS):
            errors.append(ValidationError(_("WeCom sends JPG and PNG images only."), code="image_format"))

    def _validate_file(self, errors):
        self._validate_media(errors)

    def _validate_media(self, errors):
        if self.attachment is None:
            if not self.body.get("media_id"):
                errors.append(ValidationError(_("Give a media_id or a file to upload."), code="no_media"))
            return
        size = len(self.attachment.content)
        limit = MEDIA_MAX_BYTES[self.msgtype]
        if not MEDIA_MIN_BYTES <= size <= limit:
            errors.append(
                ValidationError(
                    _("The file must be between %(min)d bytes and %(max)d MB."),
                    code="media_size",
                    params={"min": MEDIA_MIN_BYTES, "max": limit // (1024 * 1024)},
                )
            )

    # WeCom's form ---------------------------------------------------------------------------------

    def payload(self):
        """The message part of a ``message/send`` body: msgtype, its object and the options."""
        data = {"msgtype": self.msgtype, self.msgtype: dict(self.body)}
        # markdown and template cards have no "safe" and WeCom rejects it there.
        if self.safe and self.msgtype not in ("markdown", "template_card"):
            data["safe"] = 1
        if self.enable_duplicate_check:
            data["enable_duplicate_check"] = 1
            data["duplicate_check_interval"] = int(self.duplicate_check_interval)
        return data

    def log_content(self):
        """What the message log keeps: the payload, plus the name and size of a file to upload."""
        data = self.payload()
        if self.attachment is not None:
            data["attachment"] = {"filename": self.attachment.filename, "size": len(self.attachment.content)}
        return data

    def summary(self):
        """A one-line description for lists and logs."""
        return summarize(self.msgtype, self.body)


def summarize(msgtype, body):
    """A one-line description of a message body (text, card title, article titles or media_id)."""
    if msgtype in ("text", "markdown"):
        return body.get("content", "")
    if msgtype == "textcard":
        return body.get("title", "")
    if msgtype == "template_card":
        title = body.get("main_title") if isinstance(body.get("main_title"), dict) else {}
        return title.get("title") or body.get("sub_title_text") or body.get("card_type", "")
    if msgtype == "news":
        return " / ".join(article.get("title", "") for article in body.get("articles", []))
    return body.get("media_id", "")

"""Decrypted callback XML → typed, immutable events; and the passive reply XML going the other way.

Pure Python (no Django). :func:`parse_event` looks the message up in one table,
:data:`EVENT_TYPES`, keyed on (MsgType, Event, ChangeType). Anything not in the table, or a known type
carrying a value that cannot be read as its documented type, becomes an :class:`UnknownEvent`: kept
with all its fields and a dedupe key, never dropped. Only XML that cannot be parsed at all raises
:class:`EventParseError`.

Formats: messages https://developer.work.weixin.qq.com/document/path/90239, app events
https://developer.work.weixin.qq.com/document/path/90240, contact changes
https://developer.work.weixin.qq.com/document/path/90970 (members), 90971 (departments) and 90972
(tags), customer changes https://developer.work.weixin.qq.com/document/path/92130, approval changes
https://developer.work.weixin.qq.com/document/path/91815, template card clicks (template_card_event, doc 90240).

Typed fields that are absent from the XML are ``None``; present but empty they are ``""`` (or ``[]``
for lists). The difference matters: an ``update_user`` event carries only the fields that changed.

Why one module of ~1,100 lines (over the app's 600): it is WeCom's catalogue of callback types, one small
frozen class per documented type, and the table :data:`EVENT_TYPES` that the parser reads. Split by
kind, each part would need the others' base classes and the table would be assembled from imports,
which hides the one thing a reader comes here for: the whole list, in WeCom's order, beside the parser
that honours it. The passive-reply builders at the end are its mirror image (the same XML vocabulary).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple
from xml.etree.ElementTree import Element, ParseError

import msgspec
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _defused_fromstring
from lxml import etree

__all__ = [
    "EVENT_TYPES",
    "AppEvent",
    "Article",
    "ClickEvent",
    "ContactEvent",
    "ContactPartyEvent",
    "ContactTagEvent",
    "ContactUserEvent",
    "CustomerEvent",
    "EnterAgentEvent",
    "Event",
    "EventParseError",
    "ExternalChatEvent",
    "ExternalContactEvent",
    "ExternalTagEvent",
    "ImageMessage",
    "ImageReply",
    "LinkMessage",
    "LocationEvent",
    "LocationMessage",
    "LocationSelectEvent",
    "Message",
    "NewsReply",
    "PicEvent",
    "ScancodeEvent",
    "SubscribeEvent",
    "TextMessage",
    "TemplateCardEvent",
    "TextReply",
    "UnknownEvent",
    "UnsubscribeEvent",
    "VideoMessage",
    "VideoReply",
    "ViewEvent",
    "VoiceMessage",
    "VoiceReply",
    "build_passive_reply_xml",
    "cdata",
    "parse_event",
    "parse_xml",
]

# Deeper nesting than any WeCom payload (ExtAttr is three levels) is refused rather than walked.
_MAX_DEPTH = 16
# Fields that differ between the callback URLs one change can be pushed to (the contact-sync URL
# and an app URL), so they stay out of payload digests.
_ROUTING_TAGS = frozenset({"ToUserName", "AgentID"})
# Bounded so int() never meets a string past Python's digit limit; WeCom's ints fit in 64 bits.
_INT_RE = re.compile(r"[+-]?[0-9]{1,20}")
# The form WeCom writes its lists in ("1,2,3"): read with one match instead of one per item.
_PLAIN_INT_LIST_RE = re.compile(r"[+-]?[0-9]{1,20}(?:,[+-]?[0-9]{1,20})*")


# Every XML attack defusedxml guards against (entity declarations and so billion laughs and quadratic
# blowup, external entities, external DTDs, parameter entities) needs a document type declaration, and
# XML 1.0 spells its start one way only: this literal, case and all (https://www.w3.org/TR/xml/#dt-doctype).
_DOCTYPE = "<!DOCTYPE"


# libxml2 through lxml, with everything that could reach outside the document off: no entity substitution, no
# DTD loading, no network, and libxml2's own limits on depth (256) and text size (10 MB) kept (no huge_tree).
# Behind the DOCTYPE check below no DTD ever reaches it: these settings are the second lock. Comments and
# processing instructions are dropped, as ElementTree's parser drops them. The encoding is forced, so an
# ``encoding="..."`` declaration cannot make it reinterpret the bytes.
_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "encoding": "utf-8",
    "remove_comments": True,
    "remove_pis": True,
}
# One parser per thread, as lxml's FAQ advises: a parser is never used by two threads at once, and libxml2
# parses without the GIL.
_PARSERS = threading.local()


def _parser() -> etree.XMLParser:
    try:
        return _PARSERS.parser
    except AttributeError:
        parser = _PARSERS.parser = etree.XMLParser(**_PARSER_OPTIONS)
        return parser


def parse_xml(text: str, utf8: bytes | None = None) -> Element:
    """Parse XML text at C speed, refusing what defusedxml refuses; the root element.

    Text without ``<!DOCTYPE`` cannot declare or reference anything but XML's five predefined entities
    (an undeclared ``&x;`` is a well-formedness error), so it goes to libxml2 (lxml, hardened as
    ``_PARSER_OPTIONS`` says). Text holding the literal (a real DOCTYPE, or the words inside a CDATA section or
    comment) goes to defusedxml, which refuses the DTD and entities and parses the rest as XML; that path is
    slow and rare (issue 19). Either way the root answers the ElementTree API (an lxml element, or an
    ElementTree one from defusedxml). Only ``str`` is accepted: the caller decodes the bytes, so an
    ``encoding="..."`` declaration cannot reinterpret them. A caller that holds the bytes ``text`` was decoded
    from passes them as ``utf8``, and libxml2 reads those rather than the text encoded again (the parser's
    encoding is forced to UTF-8 either way).

    Why lxml rather than the C ElementTree (issue 19): on a 950-byte member change it parses in 7.0 µs
    against 11.7 (about 2 of which build the ElementTree parser object), and although walking lxml's children
    costs more (5.0 against 1.9 µs for parse_event's fields), parse_event is 2 µs faster in
    ``bench/callbacks_inprocess.py``. The envelope stays with expat (crypto.py): libxml2 is no faster on its
    one long CDATA section.

    Raises what defusedxml raises: :class:`defusedxml.DTDForbidden`, :class:`defusedxml.EntitiesForbidden`,
    :class:`defusedxml.ExternalReferenceForbidden`, :class:`xml.etree.ElementTree.ParseError` (libxml2's
    syntax errors become it too), and ValueError for a lone surrogate, which has no UTF-8 form.
    """
    if _DOCTYPE in text:
        return _defused_fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    data = text.encode("utf-8") if utf8 is None else utf8
    try:
        return etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise ParseError(str(exc)) from None


class EventParseError(ValueError):
    """The text is not well-formed XML with an ``<xml>`` root (or holds a DTD or entities)."""


class _BadValue(Exception):
    """A known field whose text does not have its documented type."""

    def __init__(self, tag: str):
        super().__init__(tag)
        self.tag = tag


# Field readers. Those of a leaf's text take the text (never None: an absent element is None without a
# call) and the tag to name in the error; the others take the element itself (None when absent).


def _text(text: str, tag: str) -> str:
    return text


def _int(text: str, tag: str) -> int | None:
    # isdigit alone would let other scripts' digits through, and int() would read them.
    if text.isdigit() and text.isascii() and len(text) <= 20:
        return int(text)  # WeCom's own form, "1700000000": nothing to strip, no regex
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 20) and not _INT_RE.fullmatch(text):
        raise _BadValue(tag)
    return int(text)


def _float(text: str, tag: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise _BadValue(tag) from None


def _str_list(text: str, tag: str) -> list[str]:
    return [item for item in map(str.strip, text.split(",")) if item]


def _int_list(text: str, tag: str) -> list[int]:
    items = text.split(",")
    if len(text) <= 20 and text.isascii() and all(map(str.isdigit, items)):
        return list(map(int, items))  # a short "1,2,3": ASCII digits, none empty, none past 20 digits
    if text and _PLAIN_INT_LIST_RE.fullmatch(text):
        return list(map(int, items))
    items = _str_list(text, tag)
    if not all(map(_INT_RE.fullmatch, items)):
        raise _BadValue(tag)
    return list(map(int, items))


_TEXT_READERS = frozenset({_text, _int, _float, _str_list, _int_list})


def _child_texts(tag: str, inner: str | None = None) -> Callable[[Element | None], list[str] | None]:
    """Reader for a list element: the text of each ``tag`` child (or of ``inner`` inside it)."""

    def read(element: Element | None) -> list[str] | None:
        if element is None:
            return None
        if inner is None:
            return [child.text or "" for child in element.findall(tag)]
        return [child.findtext(inner, "") for child in element.findall(tag)]

    return read


Spec = tuple[tuple[str, str, Callable[..., Any]], ...]


class Event(msgspec.Struct, frozen=True):
    """What every callback carries, whatever its type.

    ``fields`` holds every child of ``<xml>`` by tag: a leaf as its text, a nested element as a dict
    of its children, a tag that repeats as a list of those values.

    The events are frozen msgspec Structs (slotted, immutable, compared field by field, as frozen
    dataclasses are) because one is built per callback: :func:`parse_event` builds a member change of 26
    fields in 0.1 µs where a frozen dataclass's ``__init__`` took 3.7 µs, a tenth of the whole callback
    (issue 19). Subclasses inherit the configuration; ``msgspec.structs.fields``, ``replace`` and
    ``asdict`` stand in for the ``dataclasses`` functions.
    """

    xml: str
    to_user_name: str | None
    from_user_name: str | None
    create_time: int
    msg_type: str | None
    event: str | None
    change_type: str | None
    agent_id: int | None
    fields: dict[str, Any]

    _KIND: ClassVar[str] = "unknown"
    _SPEC: ClassVar[Spec] = ()
    _SUBJECT: ClassVar[str] = "from_user_name"
    # Change types whose payload is the change itself, so two of them for one subject can fall in the
    # same second (two edits of one member): their key also carries a digest of the payload.
    _DIGEST_CHANGE_TYPES: ClassVar[frozenset[str]] = frozenset()
    # Left out of the repr: the whole payload twice over, and (in subclasses) credentials and bulky dicts.
    _NOT_IN_REPR: ClassVar[frozenset[str]] = frozenset({"xml", "fields"})

    def __repr__(self) -> str:
        shown = (name for name in self.__struct_fields__ if name not in self._NOT_IN_REPR)
        return f"{type(self).__qualname__}({', '.join(f'{name}={getattr(self, name)!r}' for name in shown)})"

    @property
    def kind(self) -> str:
        """``"message"``, ``"event"`` (app events), ``"contact"``, ``"customer"`` or ``"unknown"``."""
        return self._KIND

    @property
    def subject(self) -> str | None:
        """The id the callback is about: a member, department, tag, external contact or chat."""
        value = getattr(self, self._SUBJECT)
        return None if value is None else str(value)

    @property
    def dedupe_key(self) -> str:
        """Equal for WeCom's retries of one delivery, different for two real events.

        Messages are keyed on MsgId. Events have none, so they are keyed on FromUserName, CreateTime,
        Event, ChangeType and the subject (doc 90238 on retries), plus what tells apart two events
        that share those: the rename target, the member beside the external contact, the menu key.
        A create_user and an update_user of one member in one second therefore get two keys.
        """
        return _event_key(self)

    def _dedupe_extra(self) -> tuple[Any, ...]:
        return ()


def _event_key(event: Event) -> str:
    parts = [
        event.from_user_name,
        event.create_time,
        event.event,
        event.change_type,
        event.subject,
        *event._dedupe_extra(),
    ]
    if event.change_type in event._DIGEST_CHANGE_TYPES:
        parts.append(_payload_digest(event.fields))
    return "|".join(["" if part is None else str(part) for part in parts])


def _payload_digest(fields: Mapping[str, Any]) -> str:
    # A copy without the routing tags (the encoder sorts the keys, so their order does not matter).
    payload = dict(fields)
    for tag in _ROUTING_TAGS:
        payload.pop(tag, None)
    return hashlib.sha1(_canonical_json(payload)).hexdigest()[:16]


# Sorted keys, no spaces, UTF-8 as it is: byte for byte what json.dumps(sort_keys=True, ensure_ascii=False,
# separators=(",", ":")) gives for the strings, dicts and lists a callback's fields are made of (a test
# compares the two on generated payloads), in 0.6 µs against 5.7 for a member change (issue 19). Stored
# dedupe keys were made with json.dumps, so the two must agree for a retry to find its first delivery.
_JSON_SORTED = msgspec.json.Encoder(order="sorted")


def _canonical_json(payload: Mapping[str, Any]) -> bytes:
    try:
        return _JSON_SORTED.encode(payload)
    except UnicodeEncodeError:
        # A lone surrogate (from a str handed to parse_event, never from decrypted bytes): json.dumps writes it.
        text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "surrogatepass")


# App messages, doc 90239.


class Message(Event):
    msg_id: str | None = None

    _KIND: ClassVar[str] = "message"
    _SPEC: ClassVar[Spec] = (("msg_id", "MsgId", _text),)

    @property
    def dedupe_key(self) -> str:
        """``msg:<MsgId>``: WeCom gives every message a unique 64-bit id."""
        if self.msg_id:
            return f"msg:{self.msg_id.strip()}"
        return _event_key(self)


class TextMessage(Message):
    content: str | None = None

    _SPEC: ClassVar[Spec] = (*Message._SPEC, ("content", "Content", _text))


class ImageMessage(Message):
    pic_url: str | None = None
    media_id: str | None = None

    _SPEC: ClassVar[Spec] = (*Message._SPEC, ("pic_url", "PicUrl", _text), ("media_id", "MediaId", _text))


class VoiceMessage(Message):
    media_id: str | None = None
    format: str | None = None

    _SPEC: ClassVar[Spec] = (*Message._SPEC, ("media_id", "MediaId", _text), ("format", "Format", _text))


class VideoMessage(Message):
    media_id: str | None = None
    thumb_media_id: str | None = None

    _SPEC: ClassVar[Spec] = (
        *Message._SPEC,
        ("media_id", "MediaId", _text),
        ("thumb_media_id", "ThumbMediaId", _text),
    )


class LocationMessage(Message):
    location_x: float | None = None
    location_y: float | None = None
    scale: int | None = None
    label: str | None = None

    _SPEC: ClassVar[Spec] = (
        *Message._SPEC,
        ("location_x", "Location_X", _float),
        ("location_y", "Location_Y", _float),
        ("scale", "Scale", _int),
        ("label", "Label", _text),
    )


class LinkMessage(Message):
    title: str | None = None
    description: str | None = None
    url: str | None = None
    pic_url: str | None = None

    _SPEC: ClassVar[Spec] = (
        *Message._SPEC,
        ("title", "Title", _text),
        ("description", "Description", _text),
        ("url", "Url", _text),
        ("pic_url", "PicUrl", _text),
    )


# App events, doc 90240.


class AppEvent(Event):
    event_key: str | None = None

    _KIND: ClassVar[str] = "event"
    _SPEC: ClassVar[Spec] = (("event_key", "EventKey", _text),)

    def _dedupe_extra(self) -> tuple[Any, ...]:
        # Two different menu items tapped in one second are two events.
        return (self.event_key,) if self.event_key else ()


class SubscribeEvent(AppEvent):
    pass


class UnsubscribeEvent(AppEvent):
    pass


class EnterAgentEvent(AppEvent):
    pass


class ClickEvent(AppEvent):
    pass


class ViewEvent(AppEvent):
    pass


class LocationEvent(AppEvent):
    latitude: float | None = None
    longitude: float | None = None
    precision: float | None = None

    _SPEC: ClassVar[Spec] = (
        *AppEvent._SPEC,
        ("latitude", "Latitude", _float),
        ("longitude", "Longitude", _float),
        ("precision", "Precision", _float),
    )


class ScancodeEvent(AppEvent):
    """``scancode_push`` and ``scancode_waitmsg``."""

    scan_type: str | None = None
    scan_result: str | None = None

    _SPEC: ClassVar[Spec] = (
        *AppEvent._SPEC,
        ("scan_type", "ScanCodeInfo/ScanType", _text),
        ("scan_result", "ScanCodeInfo/ScanResult", _text),
    )


class PicEvent(AppEvent):
    """``pic_sysphoto``, ``pic_photo_or_album`` and ``pic_weixin``."""

    count: int | None = None
    pic_md5_sums: list[str] | None = None

    _SPEC: ClassVar[Spec] = (
        *AppEvent._SPEC,
        ("count", "SendPicsInfo/Count", _int),
        ("pic_md5_sums", "SendPicsInfo/PicList", _child_texts("item", "PicMd5Sum")),
    )


class LocationSelectEvent(AppEvent):
    location_x: float | None = None
    location_y: float | None = None
    scale: int | None = None
    label: str | None = None
    poiname: str | None = None

    _SPEC: ClassVar[Spec] = (
        *AppEvent._SPEC,
        ("location_x", "SendLocationInfo/Location_X", _float),
        ("location_y", "SendLocationInfo/Location_Y", _float),
        ("scale", "SendLocationInfo/Scale", _int),
        ("label", "SendLocationInfo/Label", _text),
        ("poiname", "SendLocationInfo/Poiname", _text),
    )


# Contact changes (Event=change_contact), docs 90970, 90971, 90972.


class ContactEvent(Event):
    _KIND: ClassVar[str] = "contact"


class ContactUserEvent(ContactEvent):
    """``create_user``, ``update_user`` (changed fields only) and ``delete_user``.

    ``new_user_id`` is set when the member's UserID was renamed; ``ExtAttr`` stays in ``fields``.
    """

    user_id: str | None = None
    new_user_id: str | None = None
    name: str | None = None
    departments: list[int] | None = None
    main_department: int | None = None
    is_leader_in_dept: list[int] | None = None
    direct_leader: list[str] | None = None
    position: str | None = None
    mobile: str | None = None
    gender: str | None = None
    email: str | None = None
    biz_mail: str | None = None
    status: int | None = None
    avatar: str | None = None
    alias: str | None = None
    telephone: str | None = None
    address: str | None = None

    _SPEC: ClassVar[Spec] = (
        ("user_id", "UserID", _text),
        ("new_user_id", "NewUserID", _text),
        ("name", "Name", _text),
        ("departments", "Department", _int_list),
        ("main_department", "MainDepartment", _int),
        ("is_leader_in_dept", "IsLeaderInDept", _int_list),
        ("direct_leader", "DirectLeader", _str_list),
        ("position", "Position", _text),
        ("mobile", "Mobile", _text),
        ("gender", "Gender", _text),
        ("email", "Email", _text),
        ("biz_mail", "BizMail", _text),
        ("status", "Status", _int),
        ("avatar", "Avatar", _text),
        ("alias", "Alias", _text),
        ("telephone", "Telephone", _text),
        ("address", "Address", _text),
    )
    _SUBJECT: ClassVar[str] = "user_id"
    _DIGEST_CHANGE_TYPES: ClassVar[frozenset[str]] = frozenset({"update_user"})

    def _dedupe_extra(self) -> tuple[Any, ...]:
        return (self.new_user_id,) if self.new_user_id else ()


class ContactPartyEvent(ContactEvent):
    """``create_party``, ``update_party`` and ``delete_party``."""

    id: int | None = None
    name: str | None = None
    parent_id: int | None = None
    order: int | None = None

    _SPEC: ClassVar[Spec] = (
        ("id", "Id", _int),
        ("name", "Name", _text),
        ("parent_id", "ParentId", _int),
        ("order", "Order", _int),
    )
    _SUBJECT: ClassVar[str] = "id"
    _DIGEST_CHANGE_TYPES: ClassVar[frozenset[str]] = frozenset({"update_party"})


class ContactTagEvent(ContactEvent):
    """``update_tag``: members and departments added to or removed from a tag."""

    tag_id: int | None = None
    add_user_items: list[str] | None = None
    del_user_items: list[str] | None = None
    add_party_items: list[int] | None = None
    del_party_items: list[int] | None = None

    _SPEC: ClassVar[Spec] = (
        ("tag_id", "TagId", _int),
        ("add_user_items", "AddUserItems", _str_list),
        ("del_user_items", "DelUserItems", _str_list),
        ("add_party_items", "AddPartyItems", _int_list),
        ("del_party_items", "DelPartyItems", _int_list),
    )
    _SUBJECT: ClassVar[str] = "tag_id"
    _DIGEST_CHANGE_TYPES: ClassVar[frozenset[str]] = frozenset({"update_tag"})


# Customer contact changes, doc 92130.


class CustomerEvent(Event):
    _KIND: ClassVar[str] = "customer"


class ExternalContactEvent(CustomerEvent):
    """``change_external_contact``: a member (``user_id``) and an external contact changed relation."""

    user_id: str | None = None
    external_user_id: str | None = None
    state: str | None = None
    welcome_code: str | None = None
    source: str | None = None
    fail_reason: str | None = None

    _SPEC: ClassVar[Spec] = (
        ("user_id", "UserID", _text),
        ("external_user_id", "ExternalUserID", _text),
        ("state", "State", _text),
        ("welcome_code", "WelcomeCode", _text),
        ("source", "Source", _text),
        ("fail_reason", "FailReason", _text),
    )
    _SUBJECT: ClassVar[str] = "external_user_id"

    def _dedupe_extra(self) -> tuple[Any, ...]:
        # One external contact added by two members in one second is two events. WelcomeCode is
        # deliberately left out: it is a short-lived credential, not part of the event's identity.
        return (self.user_id,)


class ExternalChatEvent(CustomerEvent):
    """``change_external_chat``: a customer group was created, updated or dismissed."""

    chat_id: str | None = None
    update_detail: str | None = None
    join_scene: int | None = None
    quit_scene: int | None = None
    mem_change_cnt: int | None = None
    mem_change_list: list[str] | None = None
    last_mem_ver: str | None = None
    cur_mem_ver: str | None = None

    _SPEC: ClassVar[Spec] = (
        ("chat_id", "ChatId", _text),
        ("update_detail", "UpdateDetail", _text),
        ("join_scene", "JoinScene", _int),
        ("quit_scene", "QuitScene", _int),
        ("mem_change_cnt", "MemChangeCnt", _int),
        ("mem_change_list", "MemChangeList", _child_texts("Item")),
        ("last_mem_ver", "LastMemVer", _text),
        ("cur_mem_ver", "CurMemVer", _text),
    )
    _SUBJECT: ClassVar[str] = "chat_id"
    _DIGEST_CHANGE_TYPES: ClassVar[frozenset[str]] = frozenset({"update"})

    def _dedupe_extra(self) -> tuple[Any, ...]:
        return (self.update_detail,) if self.update_detail else ()


class ExternalTagEvent(CustomerEvent):
    """``change_external_tag``: a customer tag or tag group was created, updated, deleted or reordered."""

    id: str | None = None
    tag_type: str | None = None
    strategy_id: int | None = None

    _SPEC: ClassVar[Spec] = (
        ("id", "Id", _text),
        ("tag_type", "TagType", _text),
        ("strategy_id", "StrategyId", _int),
    )
    _SUBJECT: ClassVar[str] = "id"

    def _dedupe_extra(self) -> tuple[Any, ...]:
        return (self.tag_type, self.strategy_id)


# Template cards, doc 90240: template_card_event when a member clicks a card the app sent.


def _selected_items(element: Element | None) -> list[dict[str, Any]] | None:
    """``<SelectedItems>`` as ``[{"question_key": …, "option_ids": [...]}, …]``, in WeCom's order."""
    if element is None:
        return None
    return [
        {
            "question_key": item.findtext("QuestionKey", ""),
            "option_ids": [option.text or "" for option in item.findall("OptionIds/OptionId")],
        }
        for item in element.findall("SelectedItem")
    ]


class TemplateCardEvent(AppEvent):
    """``template_card_event``: a member clicked a button of a template card the app sent, or submitted a
    vote or multiple choice card. ``event_key`` is the button's (or submit button's) key, ``task_id`` the
    card's, ``response_code`` what updates this member's card once (message/update_template_card, 72 h),
    ``selected_items`` the choices made, ``[{"question_key", "option_ids"}]``.
    """

    task_id: str | None = None
    card_type: str | None = None
    response_code: str | None = None
    selected_items: list[dict[str, Any]] | None = None

    _KIND: ClassVar[str] = "card"
    # A response_code updates the member's card: a credential, kept out of logs.
    _NOT_IN_REPR: ClassVar[frozenset[str]] = Event._NOT_IN_REPR | {"response_code"}
    _SPEC: ClassVar[Spec] = (
        *AppEvent._SPEC,
        ("task_id", "TaskId", _text),
        ("card_type", "CardType", _text),
        ("response_code", "ResponseCode", _text),
        ("selected_items", "SelectedItems", _selected_items),
    )

    def _dedupe_extra(self) -> tuple[Any, ...]:
        # Each click carries its own response_code and WeCom's retries the same one: two clicks in one
        # second are two events. A digest, so the key does not hold a usable code.
        code = hashlib.sha256((self.response_code or "").encode("utf-8")).hexdigest()[:16]
        return (self.event_key, self.task_id, code)


# Approvals, doc 91815: sys_approval_change on the app's callback URL.


def _approval_info(element: Element | None) -> dict[str, Any] | None:
    """``<ApprovalInfo>`` as a dict: each child by tag, a repeated tag (SpRecord, Details, Notifyer,
    Comments) as a list, as ``fields`` holds it."""
    if element is None:
        return None
    return _collect(element, 1)


class ApprovalChangeEvent(Event):
    """``sys_approval_change``: an approval (审批) was submitted, decided, revoked or commented on.

    ``info`` is the whole ``<ApprovalInfo>``; ``sp_no``, ``sp_status`` and ``status_change_event``
    (1 submitted, 2 approved, 3 rejected, 4 transferred, 5 reminded, 6 revoked, 8 revoked after
    approval, 10 comment added) are read out of it.
    """

    sp_no: str | None = None
    sp_status: int | None = None
    status_change_event: int | None = None
    info: dict[str, Any] | None = None

    _KIND: ClassVar[str] = "approval"
    _NOT_IN_REPR: ClassVar[frozenset[str]] = Event._NOT_IN_REPR | {"info"}
    _SPEC: ClassVar[Spec] = (
        ("sp_no", "ApprovalInfo/SpNo", _text),
        ("sp_status", "ApprovalInfo/SpStatus", _int),
        ("status_change_event", "ApprovalInfo/StatuChangeEvent", _int),
        ("info", "ApprovalInfo", _approval_info),
    )
    _SUBJECT: ClassVar[str] = "sp_no"

    def _dedupe_extra(self) -> tuple[Any, ...]:
        # Two changes of one approval in one second (an approval and a comment) are two events: the
        # whole ApprovalInfo tells them apart, WeCom's retries of one delivery carry the same one.
        return (self.status_change_event, _payload_digest(self.info or {}))


class UnknownEvent(Event):
    """A callback this module has no type for, or whose known type carried an unreadable value.

    ``reason`` says which. Everything WeCom sent is still in ``fields`` and ``xml``.
    """

    reason: str = "unknown type"

    _KIND: ClassVar[str] = "unknown"

    @property
    def subject(self) -> str | None:
        for tag in ("UserID", "ExternalUserID", "ChatId", "TagId", "Id"):
            value = self.fields.get(tag)
            if isinstance(value, str) and value:
                return value.strip()
        return self.from_user_name

    @property
    def dedupe_key(self) -> str:
        """``msg:<MsgId>`` when there is one, else the event key plus a digest of the payload.

        Nothing is known about which fields identify an unknown event, so the whole payload does.
        """
        msg_id = self.fields.get("MsgId")
        if isinstance(msg_id, str) and msg_id.strip():
            return f"msg:{msg_id.strip()}"
        return f"{_event_key(self)}|{_payload_digest(self.fields)}"


# The one table of types. Keys are lower-cased (MsgType, Event, ChangeType); a part that does not
# select the type is None. WeCom spells the location event "LOCATION", hence the lower-casing.
EVENT_TYPES: Mapping[tuple[str, str | None, str | None], type[Event]] = MappingProxyType(
    {
        ("text", None, None): TextMessage,
        ("image", None, None): ImageMessage,
        ("voice", None, None): VoiceMessage,
        ("video", None, None): VideoMessage,
        ("location", None, None): LocationMessage,
        ("link", None, None): LinkMessage,
        ("event", "subscribe", None): SubscribeEvent,
        ("event", "unsubscribe", None): UnsubscribeEvent,
        ("event", "enter_agent", None): EnterAgentEvent,
        ("event", "click", None): ClickEvent,
        ("event", "view", None): ViewEvent,
        ("event", "location", None): LocationEvent,
        ("event", "scancode_push", None): ScancodeEvent,
        ("event", "scancode_waitmsg", None): ScancodeEvent,
        ("event", "pic_sysphoto", None): PicEvent,
        ("event", "pic_photo_or_album", None): PicEvent,
        ("event", "pic_weixin", None): PicEvent,
        ("event", "location_select", None): LocationSelectEvent,
        ("event", "change_contact", "create_user"): ContactUserEvent,
        ("event", "change_contact", "update_user"): ContactUserEvent,
        ("event", "change_contact", "delete_user"): ContactUserEvent,
        ("event", "change_contact", "create_party"): ContactPartyEvent,
        ("event", "change_contact", "update_party"): ContactPartyEvent,
        ("event", "change_contact", "delete_party"): ContactPartyEvent,
        ("event", "change_contact", "update_tag"): ContactTagEvent,
        ("event", "change_external_contact", "add_external_contact"): ExternalContactEvent,
        ("event", "change_external_contact", "edit_external_contact"): ExternalContactEvent,
        ("event", "change_external_contact", "del_external_contact"): ExternalContactEvent,
        ("event", "change_external_contact", "add_half_external_contact"): ExternalContactEvent,
        ("event", "change_external_contact", "del_follow_user"): ExternalContactEvent,
        ("event", "change_external_contact", "transfer_fail"): ExternalContactEvent,
        ("event", "change_external_chat", "create"): ExternalChatEvent,
        ("event", "change_external_chat", "update"): ExternalChatEvent,
        ("event", "change_external_chat", "dismiss"): ExternalChatEvent,
        ("event", "change_external_tag", "create"): ExternalTagEvent,
        ("event", "change_external_tag", "update"): ExternalTagEvent,
        ("event", "change_external_tag", "delete"): ExternalTagEvent,
        ("event", "change_external_tag", "shuffle"): ExternalTagEvent,
        ("event", "sys_approval_change", None): ApprovalChangeEvent,
        ("event", "template_card_event", None): TemplateCardEvent,
    }
)


class _ReadPlan(NamedTuple):
    """How parse_event reads a class's own fields, in their order (so the values build the event by position).

    ``tags``: for each field, the direct child of ``<xml>`` whose text it starts from (a path's field
    starts from None: no tag holds a "/"). ``conversions``: (index, reader, where, tag named in errors) for
    the fields that are more than a child's plain text: read from that text (where is None), from the text
    of the element at a path (where is the path), or from the element itself (reader takes the element).
    """

    tags: tuple[str, ...]
    conversions: tuple[tuple[int, Callable[..., Any], str | None, str], ...]


def _read_plan(cls: type[Event]) -> _ReadPlan:
    tags, conversions = [], []
    for index, (_attr, path, read) in enumerate(cls._SPEC):
        tags.append(path)
        if read in _TEXT_READERS and "/" not in path:
            if read is not _text:
                conversions.append((index, read, None, path))
        else:
            conversions.append((index, read, path, path.rsplit("/", 1)[-1]))
    return _ReadPlan(tuple(tags), tuple(conversions))


_READ_PLANS: Mapping[type[Event], _ReadPlan] = MappingProxyType(
    {cls: _read_plan(cls) for cls in set(EVENT_TYPES.values())}
)
_COMMON_FIELDS = Event.__struct_fields__
for _cls in _READ_PLANS:
    # parse_event builds events by position: a class whose _SPEC lists its fields in another order
    # fails here, at import, not on a callback.
    if _cls.__struct_fields__ != (*_COMMON_FIELDS, *(attr for attr, _, _ in _cls._SPEC)):
        raise TypeError(f"{_cls.__name__}._SPEC must list the class's own fields in their order")


def parse_event(xml_text: str | bytes, utf8: bytes | None = None) -> Event:
    """Parse one decrypted callback (the text :meth:`WeComCrypto.decrypt` returns) into an event.

    ``utf8``, when given, is the UTF-8 bytes ``xml_text`` was decoded from (what
    :meth:`WeComCrypto.decrypt_utf8` returns beside the text): the XML parser reads them instead of the text
    encoded again, 1.4 µs of a 950-byte member change (issue 19).

    The class comes from :data:`EVENT_TYPES`; see the module docstring for the doc pages. Raises
    :class:`EventParseError` only when the text is not well-formed XML with an ``<xml>`` root.
    """
    if isinstance(xml_text, (bytes, bytearray)):
        try:
            utf8 = bytes(xml_text)
            xml_text = utf8.decode("utf-8")
        except UnicodeDecodeError:
            raise EventParseError("callback XML is not UTF-8") from None
    if not isinstance(xml_text, str):
        raise EventParseError("callback XML must be str")
    if utf8 is not None and utf8.__class__ is not bytes:
        raise EventParseError("utf8 must be bytes")
    try:
        root = parse_xml(xml_text, utf8)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise EventParseError(f"callback XML is not well-formed: {exc}") from None
    if root.tag != "xml":
        raise EventParseError("callback XML root must be <xml>")

    fields = {child.tag: _collect(child, 1) if len(child) else (child.text or "") for child in root}
    if len(fields) != len(root):
        # A tag that repeats (WeCom repeats none at the top level): the slow way, values as lists.
        fields = _collect(root, 0)
    # A direct child's text is its value in fields, unless it has children or repeats: then the first
    # one's own text, as root.find would give it.
    get = fields.get
    to_user_name, from_user_name, msg_type, event, change_type, agent_id, create_time = [
        None if (value := get(tag)) is None else (value if value.__class__ is str else _first_text(root, tag)).strip()
        for tag in _COMMON_TAGS
    ]
    problem = None
    try:
        agent_id = None if agent_id is None else _int(agent_id, "AgentID")
    except _BadValue as bad:
        agent_id, problem = None, f"bad value in <{bad.tag}>"
    try:
        create_time = None if create_time is None else _int(create_time, "CreateTime")
    except _BadValue as bad:
        create_time, problem = None, f"bad value in <{bad.tag}>"
    if create_time is None and problem is None:
        problem = "no CreateTime"
    # In Event's field order. CreateTime is part of every event dedupe key; 0 stands for "absent or unreadable".
    common = (xml_text, to_user_name, from_user_name, create_time or 0, msg_type, event, change_type, agent_id, fields)
    if problem is not None:
        return UnknownEvent(*common, problem)

    cls = _lookup(msg_type, event, change_type)
    if cls is None:
        return UnknownEvent(*common, "unknown type")
    tags, conversions = _READ_PLANS[cls]
    # Most typed fields are a direct child's plain text: all read in one pass, then the few others converted.
    values = [
        value if (value := get(tag)) is None or value.__class__ is str else _first_text(root, tag) for tag in tags
    ]
    try:
        for index, read, path, tag in conversions:
            if path is None:
                if values[index] is not None:
                    values[index] = read(values[index], tag)
            elif read in _TEXT_READERS:
                element = root.find(path)
                values[index] = None if element is None else read(element.text or "", tag)
            else:
                values[index] = read(root.find(path))
    except _BadValue as bad:
        return UnknownEvent(*common, f"bad value in <{bad.tag}>")
    return cls(*common, *values)


# What every event reads, in the order parse_event unpacks them.
_COMMON_TAGS = ("ToUserName", "FromUserName", "MsgType", "Event", "ChangeType", "AgentID", "CreateTime")


def _first_text(root: Element, tag: str) -> str:
    """The text of the first child ``tag`` of ``root`` up to its own first child, as ElementTree reads it."""
    return root.find(tag).text or ""


def _lookup(msg_type: str | None, event: str | None, change_type: str | None) -> type[Event] | None:
    # The usual callback is spelled as the table is (lower case, no ChangeType where none selects): one get.
    # A hit here is what the lower-casing below would find, since every key is lower case.
    cls = EVENT_TYPES.get((msg_type, event, change_type))
    if cls is not None:
        return cls
    mt = (msg_type or "").lower()
    if mt != "event":
        return EVENT_TYPES.get((mt, None, None))
    ev = (event or "").lower()
    ct = change_type.lower() if change_type else None
    return EVENT_TYPES.get((mt, ev, ct)) or EVENT_TYPES.get((mt, ev, None))


def _collect(element: Element, depth: int) -> dict[str, Any]:
    """The children of ``element`` by tag (see :class:`Event`)."""
    if depth >= _MAX_DEPTH:
        raise EventParseError("callback XML is nested too deeply")
    out: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        value: Any = _collect(child, depth + 1) if len(child) else (child.text or "")
        if tag not in out:
            out[tag] = value
        elif isinstance(out[tag], list):
            out[tag].append(value)
        else:
            out[tag] = [out[tag], value]
    return out


# Passive replies, doc 90241.

# Characters XML 1.0 cannot carry at all, not even inside CDATA.
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# WeCom shows no more than 8 articles in one news reply.
_MAX_ARTICLES = 8


def cdata(text: str) -> str:
    """Wrap ``text`` in CDATA so that it reads back unchanged (``]]>`` is split across two sections).

    Raises ValueError for characters XML cannot carry (NUL and other C0 controls, lone surrogates).
    A ``\\r`` is carried but, as for any XML, parsers read it back as ``\\n``.
    """
    if not isinstance(text, str):
        raise TypeError("CDATA content must be str")
    if _XML_ILLEGAL.search(text):
        raise ValueError("text holds characters that XML cannot carry")
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


@dataclass(frozen=True, slots=True)
class TextReply:
    content: str


@dataclass(frozen=True, slots=True)
class ImageReply:
    media_id: str


@dataclass(frozen=True, slots=True)
class VoiceReply:
    media_id: str


@dataclass(frozen=True, slots=True)
class VideoReply:
    media_id: str
    title: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class Article:
    title: str
    description: str = ""
    url: str = ""
    pic_url: str = ""


@dataclass(frozen=True, slots=True)
class NewsReply:
    articles: Sequence[Article]


Reply = TextReply | ImageReply | VoiceReply | VideoReply | NewsReply

_REPLY_TYPES: Mapping[str, type] = MappingProxyType(
    {"text": TextReply, "image": ImageReply, "voice": VoiceReply, "video": VideoReply, "news": NewsReply}
)


def build_passive_reply_xml(
    to_user: str, from_user: str, reply: Reply | Mapping[str, Any], create_time: int | None = None
) -> str:
    """The plaintext XML of a passive reply, ready for :meth:`WeComCrypto.build_reply`.

    https://developer.work.weixin.qq.com/document/path/90241. ``to_user`` is the member's UserID
    (the incoming FromUserName), ``from_user`` the CorpID. ``reply`` is one of the reply dataclasses
    or a dict such as ``{"type": "text", "content": "hi"}`` or ``{"type": "news", "articles":
    [{"title": ..., "description": ..., "url": ..., "pic_url": ...}]}``. Raises ValueError (or
    TypeError) for a reply WeCom would not accept.
    """
    reply = _reply_from(reply)
    if create_time is None:
        create_time = int(time.time())
    if not isinstance(create_time, int) or isinstance(create_time, bool):
        raise TypeError("create_time must be an int")
    if isinstance(reply, TextReply):
        msg_type, body = "text", f"<Content>{cdata(reply.content)}</Content>"
    elif isinstance(reply, ImageReply):
        msg_type, body = "image", f"<Image><MediaId>{cdata(reply.media_id)}</MediaId></Image>"
    elif isinstance(reply, VoiceReply):
        msg_type, body = "voice", f"<Voice><MediaId>{cdata(reply.media_id)}</MediaId></Voice>"
    elif isinstance(reply, VideoReply):
        msg_type, body = (
            "video",
            (
                f"<Video><MediaId>{cdata(reply.media_id)}</MediaId><Title>{cdata(reply.title)}</Title>"
                f"<Description>{cdata(reply.description)}</Description></Video>"
            ),
        )
    else:
        articles = list(reply.articles)
        if not 1 <= len(articles) <= _MAX_ARTICLES:
            raise ValueError("a news reply holds 1 to 8 articles")
        items = "".join(
            f"<item><Title>{cdata(a.title)}</Title><Description>{cdata(a.description)}</Description>"
            f"<PicUrl>{cdata(a.pic_url)}</PicUrl><Url>{cdata(a.url)}</Url></item>"
            for a in (_article_from(article) for article in articles)
        )
        msg_type, body = "news", f"<ArticleCount>{len(articles)}</ArticleCount><Articles>{items}</Articles>"
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName><FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType>{cdata(msg_type)}</MsgType>{body}</xml>"
    )


def _reply_from(reply: Reply | Mapping[str, Any]) -> Reply:
    if isinstance(reply, (TextReply, ImageReply, VoiceReply, VideoReply, NewsReply)):
        return reply
    if not isinstance(reply, Mapping):
        raise TypeError("reply must be a reply dataclass or a dict with a 'type'")
    values = dict(reply)
    cls = _REPLY_TYPES.get(values.pop("type", None))
    if cls is None:
        raise ValueError("reply type must be one of: " + ", ".join(_REPLY_TYPES))
    if cls is NewsReply:
        return NewsReply(articles=[_article_from(article) for article in values.get("articles") or ()])
    return cls(**values)


def _article_from(article: Article | Mapping[str, Any]) -> Article:
    if isinstance(article, Article):
        return article
    if not isinstance(article, Mapping):
        raise TypeError("an article must be an Article or a dict")
    return Article(**article)

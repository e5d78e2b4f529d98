"""Template cards (模板卡片) after they are sent: the card rules message/send checks, the cards each member
holds, clicks pushed as ``template_card_event``, ``message/update_template_card`` and ``message/recall``.

Pages:

* the card types and their fields: https://developer.work.weixin.qq.com/document/path/90236 (发送应用消息);
* ``template_card_event`` on the app's callback URL: https://developer.work.weixin.qq.com/document/path/90240;
* ``message/update_template_card``: https://developer.work.weixin.qq.com/document/path/94888 (a response_code
  from message/send or from a click works once, for 72 hours);
* ``message/recall``: https://developer.work.weixin.qq.com/document/path/94867 (messages of the last 24 hours).

Error codes. A task_id that is missing where required, too long, of other characters or already used by the
app answers 42014 ("taskid has existed or empty or exceed max len", as developers report it). Every other
card that breaks a rule, an unknown, spent or expired response_code, and a recall WeCom would not do (an
unknown msgid, one older than 24 hours, one already recalled) answer 40058 (invalid parameter): WeCom does
not publish codes for these, so the fake uses its generic refusal and tests key on "refused", not on a
guessed code. Stricter than WeCom where its page is vague: an update must name whose card changes (userids,
partyids, tagids or atall), a replacement card keeps the original task_id, and recommended lengths aside
every documented limit is enforced.

Control methods act as members would in the WeCom app: ``click_template_card`` presses a button (or submits
a vote) and pushes the signed callback; the screen ``/fake/app/cards`` shows each member's cards with their
buttons and does the same from a browser (the demo's stand-in for a phone).
"""

from __future__ import annotations

import copy
import re
import secrets
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from ..callbacks import DeliveryResult
from .base import _APP, _ApiError, _Request, _Route

ROUTES = {
    "message/update_template_card": _Route("POST", _APP, "_api_update_template_card"),
    "message/recall": _Route("POST", _APP, "_api_message_recall"),
}

INVALID = 40058
TASK_ID_INVALID = 42014
RESPONSE_CODE_TTL = 72 * 3600
RECALL_WINDOW = 24 * 3600
CARD_TYPES = ("text_notice", "news_notice", "button_interaction", "vote_interaction", "multiple_interaction")
INTERACTIVE = frozenset(CARD_TYPES[2:])
_TASK_ID = re.compile(r"[0-9A-Za-z_\-@]{1,128}")


def _text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _int(value, allowed, default=0) -> bool:
    value = default if value is None else value
    return isinstance(value, int) and not isinstance(value, bool) and value in allowed


def _key(value, limit=1024) -> bool:
    return _text(value) and len(value.encode("utf-8")) <= limit


def _objects(value, low, high, required=False) -> list:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value) or not low <= len(value) <= high:
        if value == [] and not required:
            return []
        raise _ApiError(INVALID)
    return value


def _unique(values) -> None:
    values = list(values)
    if len(set(values)) != len(values):
        raise _ApiError(INVALID)


def _link(value: dict, allowed) -> None:
    kind = value.get("type", 0)
    if not _int(kind, allowed):
        raise _ApiError(INVALID)
    if kind == 1 and not _text(value.get("url")):
        raise _ApiError(INVALID)
    if kind == 2 and not _text(value.get("appid")):
        raise _ApiError(INVALID)


def _options(options, high) -> None:
    options = _objects(options, 1, high, required=True)
    if not all(_key(o.get("id"), 128) and _text(o.get("text")) for o in options):
        raise _ApiError(INVALID)
    _unique(o["id"] for o in options)


def check_card(card) -> None:
    """Refuse a ``template_card`` object as message/send does (see the module's docstring for the codes);
    the task_id's uniqueness is the caller's (it needs the app's state)."""
    if not isinstance(card, dict) or card.get("card_type") not in CARD_TYPES:
        raise _ApiError(INVALID)
    kind = card["card_type"]
    task_id = card.get("task_id")
    if task_id not in (None, "") or kind in INTERACTIVE or card.get("action_menu") is not None:
        if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
            raise _ApiError(TASK_ID_INVALID)
    for name in ("source", "action_menu", "main_title", "emphasis_content", "quote_area", "card_action",
                 "card_image", "image_text_area", "button_selection", "checkbox", "submit_button"):
        if card.get(name) is not None and not isinstance(card[name], dict):
            raise _ApiError(INVALID)
    if card.get("source") and not _int(card["source"].get("desc_color"), (0, 1, 2, 3)):
        raise _ApiError(INVALID)
    if card.get("action_menu") is not None:
        actions = _objects(card["action_menu"].get("action_list"), 1, 3, required=True)
        if not all(_text(a.get("text")) and _key(a.get("key")) for a in actions):
            raise _ApiError(INVALID)
        _unique(a["key"] for a in actions)
    title = (card.get("main_title") or {}).get("title")
    if not _text(title) and (kind != "text_notice" or not _text(card.get("sub_title_text"))):
        raise _ApiError(INVALID)
    if card.get("quote_area") is not None:
        _link(card["quote_area"], (0, 1, 2))
    for item in _objects(card.get("horizontal_content_list"), 0, 6):
        kind_of = item.get("type", 0)
        needed = {1: "url", 2: "media_id", 3: "userid"}.get(kind_of)
        if not _text(item.get("keyname")) or not _int(kind_of, (0, 1, 2, 3)) or (
                needed and not _text(item.get(needed))):
            raise _ApiError(INVALID)
    for jump in _objects(card.get("jump_list"), 0, 3):
        if not _text(jump.get("title")):
            raise _ApiError(INVALID)
        _link(jump, (0, 1, 2))
    notice = kind in ("text_notice", "news_notice")
    if notice and (card.get("card_action") is None or "type" not in card["card_action"]):
        raise _ApiError(INVALID)
    if card.get("card_action") is not None:
        _link(card["card_action"], (1, 2) if notice else (0, 1, 2))
    getattr(_Checks, kind)(card)


class _Checks:
    """Each card type's own fields (doc 90236)."""

    @staticmethod
    def text_notice(card: dict) -> None:
        pass

    @staticmethod
    def news_notice(card: dict) -> None:
        image, area = card.get("card_image"), card.get("image_text_area")
        if image is None and area is None:
            raise _ApiError(INVALID)
        if image is not None:
            ratio = image.get("aspect_ratio", 1.3)
            if not _text(image.get("url")) or isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
                    or not 1.3 <= ratio <= 2.25:
                raise _ApiError(INVALID)
        if area is not None:
            if not _text(area.get("image_url")):
                raise _ApiError(INVALID)
            _link(area, (0, 1, 2))
        if not all(_text(v.get("title")) for v in _objects(card.get("vertical_content_list"), 0, 4)):
            raise _ApiError(INVALID)

    @staticmethod
    def button_interaction(card: dict) -> None:
        buttons = _objects(card.get("button_list"), 1, 6, required=True)
        for button in buttons:
            kind = button.get("type", 0)
            if not _text(button.get("text")) or not _int(button.get("style"), (1, 2, 3, 4), 1) \
                    or not _int(kind, (0, 1)):
                raise _ApiError(INVALID)
            if (kind == 1 and not _text(button.get("url"))) or (kind == 0 and not _key(button.get("key"))):
                raise _ApiError(INVALID)
        _unique(b["key"] for b in buttons if b.get("type", 0) == 0)
        selection = card.get("button_selection")
        if selection is not None:
            if not _key(selection.get("question_key")):
                raise _ApiError(INVALID)
            _options(selection.get("option_list"), 10)

    @staticmethod
    def vote_interaction(card: dict) -> None:
        checkbox = card.get("checkbox")
        if checkbox is None or not _key(checkbox.get("question_key")) or not _int(checkbox.get("mode"), (0, 1)):
            raise _ApiError(INVALID)
        _options(checkbox.get("option_list"), 20)
        _Checks._submit(card)

    @staticmethod
    def multiple_interaction(card: dict) -> None:
        selects = _objects(card.get("select_list"), 1, 3, required=True)
        for select in selects:
            if not _key(select.get("question_key")):
                raise _ApiError(INVALID)
            _options(select.get("option_list"), 10)
        _unique(s["question_key"] for s in selects)
        _Checks._submit(card)

    @staticmethod
    def _submit(card: dict) -> None:
        submit = card.get("submit_button")
        if submit is None or not _text(submit.get("text")) or not _key(submit.get("key")):
            raise _ApiError(INVALID)


def build_card_event_xml(corp_id: str, agent_id: int, userid: str, card_type: str, task_id: str, event_key: str,
                         response_code: str, create_time: int, selected: list[tuple[str, list[str]]]) -> str:
    """``template_card_event`` as WeCom pushes it (doc 90240), SelectedItems for vote and multiple choice."""

    def t(tag: str, value) -> str:
        return f"<{tag}>{escape(str(value))}</{tag}>"

    items = ""
    if selected:
        items = "<SelectedItems>" + "".join(
            "<SelectedItem>" + t("QuestionKey", key) + "<OptionIds>" + "".join(t("OptionId", o) for o in ids)
            + "</OptionIds></SelectedItem>"
            for key, ids in selected
        ) + "</SelectedItems>"
    return ("<xml>" + t("ToUserName", corp_id) + t("FromUserName", userid) + t("CreateTime", create_time)
            + t("MsgType", "event") + t("Event", "template_card_event") + t("EventKey", event_key)
            + t("TaskId", task_id) + t("CardType", card_type) + t("ResponseCode", response_code)
            + t("AgentID", agent_id) + items + "</xml>")


class CardAPI:
    """Cards held by members, their clicks, updates and recalls. A mixin of FakeWeCom (core.py): state lives
    on FakeWeCom (``_cards_state``), created on first use."""

    def _cards(self) -> dict:
        state = getattr(self, "_cards_state", None)
        if state is None:
            # task_ids: every task_id the app used; held: (userid, task_id) -> the member's card;
            # codes: response_code -> (task_id, expires, used); recalled: msgid -> time.
            state = self._cards_state = {"task_ids": set(), "held": {}, "codes": {}, "recalled": {}}
        return state

    # ------------------------------------------------------------------ called by message/send
    def _check_template_card(self, card) -> None:
        check_card(card)
        task_id = card.get("task_id")
        with self._lock:
            if task_id and task_id in self._cards()["task_ids"]:
                raise _ApiError(TASK_ID_INVALID)

    def _keep_card(self, msgid: str, card: dict, recipients, response_code: str | None, now: float) -> None:
        """A card was delivered: each recipient holds their own copy; the task_id is spent."""
        task_id = card.get("task_id") or f"msg:{msgid}"
        with self._lock:
            state = self._cards()
            if card.get("task_id"):
                state["task_ids"].add(task_id)
            for userid in recipients:
                state["held"][(userid, task_id)] = {
                    "userid": userid, "task_id": task_id, "msgid": msgid, "card": copy.deepcopy(card),
                    "original_type": card["card_type"], "sent": int(now), "replace_name": None, "clicks": [],
                }
            if response_code:
                state["codes"][response_code] = {"task_id": task_id, "expires": now + RESPONSE_CODE_TTL, "used": False}

    # ------------------------------------------------------------------ control: what members hold
    def cards_for(self, userid: str) -> list[dict]:
        """The cards ``userid`` holds, newest first (recalled ones left out), each a copy: ``card`` as it now
        shows, ``replace_name`` when its buttons were replaced by a disabled one, ``clicks`` so far."""
        with self._lock:
            state = self._cards()
            held = [copy.deepcopy(c) for (u, _t), c in state["held"].items()
                    if u.lower() == userid.lower() and c["msgid"] not in state["recalled"]]
        return held[::-1]  # kept in the order they were sent

    @property
    def recalled_messages(self) -> dict[str, int]:
        """msgid -> when it was recalled."""
        with self._lock:
            return dict(self._cards()["recalled"])

    def click_template_card(self, userid: str, task_id: str, event_key: str,
                            selected: dict[str, list[str]] | None = None) -> list[DeliveryResult]:
        """``userid`` presses the button ``event_key`` of their card ``task_id`` (or submits a vote or multiple
        choice card, ``selected`` mapping each question_key to option ids; the card's defaults otherwise), and
        the WeCom app pushes ``template_card_event`` with a new response_code. ValueError for what the app
        would not let the member do: a card they do not hold, a recalled one, a button that is not there or
        was disabled by an update."""
        with self._lock:
            state = self._cards()
            entry = next((c for (u, t), c in state["held"].items() if u.lower() == userid.lower() and t == task_id),
                         None)
            if entry is None or entry["msgid"] in state["recalled"]:
                raise ValueError(f"{userid} holds no card {task_id}")
            if entry["replace_name"] is not None:
                raise ValueError(f"the card's buttons were replaced by {entry['replace_name']!r}")
            card = entry["card"]
            if card["card_type"] not in INTERACTIVE:
                raise ValueError("only button, vote and multiple choice cards call back")
            items = _selection(card, event_key, selected or {})
            code = secrets.token_urlsafe(48)
            now = self.now()
            state["codes"][code] = {"task_id": task_id, "expires": now + RESPONSE_CODE_TTL, "used": False}
            entry["clicks"].append({"event_key": event_key, "selected": items, "time": int(now)})
            xml = build_card_event_xml(self.corp_id, self.agent_id, entry["userid"], card["card_type"], task_id,
                                       event_key, code, int(now), items)
        return self.emit("app", xml)

    # ------------------------------------------------------------------ API
    def _api_update_template_card(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/94888"""
        data = request.json()
        self._check_agent(data.get("agentid"))
        button, card = data.get("button"), data.get("template_card")
        if (button is None) == (card is None):
            raise _ApiError(INVALID)
        targets = {key: data.get(key) for key in ("userids", "partyids", "tagids")}
        if any(v is not None and not isinstance(v, list) for v in targets.values()):
            raise _ApiError(INVALID)
        atall = data.get("atall") in (1, True)
        if not atall and not any(targets.values()):
            raise _ApiError(INVALID)
        with self._lock:
            state = self._cards()
            entry = state["codes"].get(data.get("response_code")) if isinstance(data.get("response_code"), str) \
                else None
            if entry is None or entry["used"] or entry["expires"] <= self.now():
                raise _ApiError(INVALID)
            task_id = entry["task_id"]
            holders = {c["userid"].lower(): c for (u, t), c in state["held"].items()
                       if t == task_id and c["msgid"] not in state["recalled"]}
            if atall:
                chosen, invalid = list(holders.values()), []
            else:
                wanted = [str(u) for u in targets["userids"] or ()]
                wanted += [u.userid for p in targets["partyids"] or () for u in self._party_members(p)]
                chosen = list({u.lower(): holders[u.lower()] for u in wanted if u.lower() in holders}.values())
                invalid = [u.lower() for u in targets["userids"] or () if str(u).lower() not in holders]
            if not chosen:
                raise _ApiError(81013, {"invaliduser": invalid})
            if button is not None:
                name = button.get("replace_name") if isinstance(button, dict) else None
                if not _text(name) or any(c["original_type"] not in INTERACTIVE for c in chosen):
                    raise _ApiError(INVALID)
            else:
                check_card(card)
                if card.get("task_id") not in (None, task_id):
                    raise _ApiError(TASK_ID_INVALID)
            entry["used"] = True
            for held in chosen:
                if button is not None:
                    held["replace_name"] = button["replace_name"]
                else:
                    held["card"] = {**copy.deepcopy(card), "task_id": task_id}
                    held["replace_name"] = None
        return {"invaliduser": invalid}

    def _party_members(self, party):
        org = self.org
        try:
            dept_id = int(party)
        except (TypeError, ValueError):
            return []
        with org.lock:
            return [] if dept_id not in org.departments else list(org.members_of(dept_id, recursive=True))

    def _api_message_recall(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/94867"""
        msgid = request.json().get("msgid")
        now = self.now()
        with self._lock:
            sent = next((m for m in self._sent if m.msgid == msgid), None) if isinstance(msgid, str) else None
            state = self._cards()
            if sent is None or msgid in state["recalled"] or now - sent.time > RECALL_WINDOW:
                raise _ApiError(INVALID)
            state["recalled"][msgid] = int(now)
        return {}

    def _check_agent(self, agentid) -> None:
        if agentid in (None, ""):
            raise _ApiError(41011)
        try:
            if int(agentid) != self.agent_id:
                raise _ApiError(40056)
        except (TypeError, ValueError):
            raise _ApiError(40056) from None


def _selection(card: dict, event_key: str, selected: dict) -> list[tuple[str, list[str]]]:
    """The SelectedItems of a click: checked against the card's questions, each defaulted as the WeCom app
    shows it (the checked options, the selected_id, else the first option)."""
    kind = card["card_type"]
    if kind == "button_interaction":
        keys = [b.get("key") for b in card["button_list"] if b.get("type", 0) == 0]
        if event_key not in keys:
            raise ValueError(f"the card has no button {event_key!r}")
        questions = [card["button_selection"]] if card.get("button_selection") else []
    else:
        if event_key != card["submit_button"]["key"]:
            raise ValueError(f"the card's submit button is {card['submit_button']['key']!r}")
        questions = [card["checkbox"]] if kind == "vote_interaction" else card["select_list"]
    items = []
    for question in questions:
        key = question["question_key"]
        ids = [o["id"] for o in question["option_list"]]
        chosen = selected.get(key)
        if chosen is None:
            chosen = [o["id"] for o in question["option_list"] if o.get("is_checked")] or [
                question.get("selected_id") if question.get("selected_id") in ids else ids[0]]
        chosen = [str(c) for c in chosen]
        single = question is not card.get("checkbox") or question.get("mode", 0) == 0
        if not chosen or any(c not in ids for c in chosen) or (single and len(chosen) != 1):
            raise ValueError(f"choose {'one' if single else 'some'} of {ids} for {key!r}")
        items.append((key, chosen))
    return items


# The WeCom app's view of a member's cards, as a page of the fake (the demo's stand-in for a phone) ----------

_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>企业微信 · 卡片消息 (fake)</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:760px;margin:2em auto;padding:0 1em;color:#222}}
.card{{border:1px solid #ddd;border-radius:8px;padding:.8em 1em;margin:.8em 0}}.muted{{color:#777}}
button{{margin:.2em .4em .2em 0}}button[disabled]{{color:#777}}</style></head><body>
<h1>企业微信 · 卡片消息 <small class="muted">(fake WeCom: act as the member)</small></h1>{body}</body></html>"""


def _h(value) -> str:
    """Text for HTML, quotes included (attribute values are quoted)."""
    return escape(str(value), {"'": "&#39;", '"': "&quot;"})


class CardScreen:
    """``GET /fake/app/cards`` lists the members holding cards; ``?userid=`` shows that member's cards with
    their buttons (or the disabled button an update left); ``POST /fake/app/cards/click`` (form fields
    ``userid``, ``task_id``, ``key`` and ``q:<question_key>`` for choices) clicks as the WeCom app would,
    pushes the callback, and shows the member's cards again."""

    def _card_screen(self, method: str, parts: list[str], query: dict, body: bytes):
        userid = (query.get("userid") or [""])[0]
        notice = ""
        if method == "POST" and parts[2:] == ["click"]:
            form = parse_qs(body.decode("utf-8"))
            userid = form.get("userid", [""])[0]
            selected = {k[2:]: v for k, v in form.items() if k.startswith("q:")}
            results = self.click_template_card(userid, form.get("task_id", [""])[0], form.get("key", [""])[0],
                                               selected or None)
            answered = results and results[0].status == 200
            notice = ("<p class='muted'>已提交；the app answers asynchronously: reload to see the card change.</p>"
                      if answered else "<p>the app's callback URL did not answer.</p>")
        if not userid:
            with self._lock:
                holders = sorted({u for (u, _t) in self._cards()["held"]})
            links = "".join(f"<li><a href='/fake/app/cards?userid={_h(u)}'>{_h(u)}</a></li>" for u in holders)
            page = f"<ul>{links}</ul>" if links else "<p>还没有卡片消息。</p>"
        else:
            cards = self.cards_for(userid)
            page = notice + ("".join(self._card_html(userid, c) for c in cards) or "<p>还没有卡片消息。</p>")
        return 200, _PAGE.format(body=page).encode("utf-8"), "text/html; charset=utf-8"

    def _card_html(self, userid: str, held: dict) -> str:
        card = held["card"]
        title = (card.get("main_title") or {}).get("title") or card.get("sub_title_text") or ""
        desc = (card.get("main_title") or {}).get("desc") or ""
        task_id = _h(held["task_id"])
        head = (f"<div class='card' id='card-{task_id}'><b>{_h(title)}</b> <span class='muted'>"
                f"{_h(card['card_type'])} · {task_id}</span><div>{_h(desc)}</div>")
        if held["replace_name"] is not None:
            return head + f"<button disabled class='done'>{_h(held['replace_name'])}</button></div>"
        if card["card_type"] not in INTERACTIVE:
            return head + "</div>"
        fields = (f"<form method='post' action='/fake/app/cards/click'><input type='hidden' name='userid' "
                  f"value='{_h(userid)}'><input type='hidden' name='task_id' value='{task_id}'>")
        questions = ([card["button_selection"]] if card.get("button_selection") else []) + (
            [card["checkbox"]] if card.get("checkbox") else []) + list(card.get("select_list") or [])
        for question in questions:
            name = _h("q:" + question["question_key"])
            multi = question is card.get("checkbox") and question.get("mode", 0) == 1
            options = "".join(
                f"<label><input type='{'checkbox' if multi else 'radio'}' name='{name}' value='{_h(o['id'])}'"
                f"{' checked' if o.get('is_checked') or (not multi and i == 0) else ''}> {_h(o['text'])}</label> "
                for i, o in enumerate(question["option_list"])
            )
            fields += f"<div>{_h(question.get('title', ''))} {options}</div>"
        if card["card_type"] == "button_interaction":
            buttons = "".join(f"<button name='key' value='{_h(b['key'])}'>{_h(b['text'])}</button>"
                              for b in card["button_list"] if b.get("type", 0) == 0)
        else:
            submit = card["submit_button"]
            buttons = f"<button name='key' value='{_h(submit['key'])}'>{_h(submit['text'])}</button>"
        return head + fields + buttons + "</form></div>"

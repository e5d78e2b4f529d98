from wecom_integration.client.base import BaseAPI

MAX_USERS = 1000
MAX_PARTIES = 100
MAX_TAGS = 100
MAX_NEWS_ARTICLES = 8


def _join(ids, limit, name):
    """WeCom's "a|b|c" form of a recipient list; "@all" passes through."""
    if not ids:
        return None
    if isinstance(ids, str):
        return ids
    ids = [str(i) for i in ids]
    if len(ids) > limit:
        raise ValueError(f"at most {limit} {name} per message, got {len(ids)}")
    return "|".join(ids)


class MessageAPI(BaseAPI):
    def send(self, payload):
        """Send an app message; ``payload`` is the full request body. Returns WeCom's answer, whose
        ``invaliduser``/``invalidparty``/``invalidtag`` list recipients that were skipped (errcode 81013
        when all were). https://developer.work.weixin.qq.com/document/path/90236
        """
        # A read timeout may hide a message WeCom did send: never resend on that (see base.py).
        return self._post("message/send", payload, idempotent=False)

    def _send(self, msgtype, body, touser, toparty, totag, agent_id, safe, options):
        payload = {
            "msgtype": msgtype,
            "agentid": self._agent_id(agent_id),
            msgtype: body,
        }
        recipients = {
            "touser": _join(touser, MAX_USERS, "users"),
            "toparty": _join(toparty, MAX_PARTIES, "departments"),
            "totag": _join(totag, MAX_TAGS, "tags"),
        }
        recipients = {key: value for key, value in recipients.items() if value}
        if not recipients:
            raise ValueError("a message needs touser, toparty or totag")
        payload.update(recipients)
        if safe:
            payload["safe"] = int(safe)
        # enable_duplicate_check, duplicate_check_interval, enable_id_trans …
        payload.update(options)
        return self.send(payload)

    def send_text(self, content, touser=None, toparty=None, totag=None, agent_id=None, safe=False, **options):
        """Text message. https://developer.work.weixin.qq.com/document/path/90236"""
        return self._send("text", {"content": content}, touser, toparty, totag, agent_id, safe, options)

    def send_markdown(self, content, touser=None, toparty=None, totag=None, agent_id=None, **options):
        """Markdown message (WeCom's subset). https://developer.work.weixin.qq.com/document/path/90236"""
        return self._send("markdown", {"content": content}, touser, toparty, totag, agent_id, False, options)

    def send_textcard(
        self,
        title,
        description,
        url,
        btntxt=None,
        touser=None,
        toparty=None,
        totag=None,
        agent_id=None,
        safe=False,
        **options,
    ):
        """Text card with a link. https://developer.work.weixin.qq.com/document/path/90236"""
        card = {"title": title, "description": description, "url": url}
        if btntxt:
            card["btntxt"] = btntxt
        return self._send("textcard", card, touser, toparty, totag, agent_id, safe, options)

    def send_news(
        self, articles, touser=None, toparty=None, totag=None, agent_id=None, safe=False, **options
    ):
        """News: 1 to 8 articles of {title, description, url, picurl}.

        https://developer.work.weixin.qq.com/document/path/90236
        """
        if not 1 <= len(articles) <= MAX_NEWS_ARTICLES:
            raise ValueError(f"a news message has 1 to {MAX_NEWS_ARTICLES} articles")
        body = {"articles": list(articles)}
        return self._send("news", body, touser, toparty, totag, agent_id, safe, options)

    def send_template_card(
        self, card, touser=None, toparty=None, totag=None, agent_id=None, **options
    ):
        """A template card (模板卡片消息): ``card`` is the ``template_card`` object (card_type and its
        fields). For interactive cards (button, vote, multiple choice) the answer carries a
        ``response_code`` that may update the card once, within 72 hours.

        https://developer.work.weixin.qq.com/document/path/90236
        """
        return self._send("template_card", card, touser, toparty, totag, agent_id, False, options)

    def update_template_card(
        self,
        response_code,
        *,
        replace_name=None,
        card=None,
        userids=None,
        partyids=None,
        tagids=None,
        atall=False,
        agent_id=None,
    ):
        """Update a template card sent by the app (更新模版卡片消息), with a ``response_code`` from
        message/send or from a click's template_card_event; each code works once, for 72 hours.

        Give ``replace_name`` to turn the card's buttons into one that cannot be clicked, labelled with
        that text (button, vote and multiple choice cards only), or ``card`` to replace the whole card.
        ``userids`` (≤ 1000), ``partyids`` (≤ 100), ``tagids`` (≤ 100) or ``atall`` say whose card changes.

        https://developer.work.weixin.qq.com/document/path/94888
        """
        if (replace_name is None) == (card is None):
            raise ValueError("give either replace_name or card")
        payload = {"agentid": self._agent_id(agent_id), "response_code": response_code}
        for key, ids, limit in (("userids", userids, MAX_USERS), ("partyids", partyids, MAX_PARTIES),
                                ("tagids", tagids, MAX_TAGS)):
            if ids:
                ids = list(ids)
                if len(ids) > limit:
                    raise ValueError(f"at most {limit} {key} per update, got {len(ids)}")
                payload[key] = ids
        if atall:
            payload["atall"] = 1
        if replace_name is not None:
            payload["button"] = {"replace_name": replace_name}
        else:
            payload["template_card"] = card
        # Like message/send: a code spent by a request whose answer was lost cannot be spent again.
        return self._post("message/update_template_card", payload, idempotent=False)

    def recall(self, msgid):
        """Recall (撤回) a message the app sent in the last 24 hours, by the ``msgid`` message/send
        answered. Only the WeCom client's copy is recalled, not the WeChat plug-in's.

        https://developer.work.weixin.qq.com/document/path/94867
        """
        return self._post("message/recall", {"msgid": msgid})

    def send_image(
        self, media_id, touser=None, toparty=None, totag=None, agent_id=None, safe=False, **options
    ):
        """Image from ``media.upload``. https://developer.work.weixin.qq.com/document/path/90236"""
        return self._send("image", {"media_id": media_id}, touser, toparty, totag, agent_id, safe, options)

    def send_file(
        self, media_id, touser=None, toparty=None, totag=None, agent_id=None, safe=False, **options
    ):
        """File from ``media.upload``. https://developer.work.weixin.qq.com/document/path/90236"""
        return self._send("file", {"media_id": media_id}, touser, toparty, totag, agent_id, safe, options)

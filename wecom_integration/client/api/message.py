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

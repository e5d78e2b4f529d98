"""The URL converter for WeCom ids in paths: userids and external userids are data, not path syntax.

WeCom's userids are meant to be letters, digits and ``_-@.``, but a callback can carry anything in
``FromUserName`` and we store what it carries (issue 16: a ``/`` made ``reverse()`` fail and the inbox
answer 500). So a URL segment named ``<wecomid:...>`` accepts any text: ``/``, ``..``, ``%``, spaces,
``?``, ``#``, Chinese, any length.

``to_url`` percent-encodes every ASCII character but letters, digits and ``-_.~`` (and the dots of an
id that is all dots); ``reverse()`` then quotes the ``%`` again, so the request path carries e.g.
``%252F``. The server decodes the request path once (WSGI), which leaves ``%2F`` in the segment for
``to_python`` to decode; no ``/``, ``?``, ``#`` or dot segment (``.``, ``..``) ever reaches a browser
or a proxy, which would act on them. Other characters (Chinese) are left to ``reverse()``, which
encodes them once as UTF-8. Plain userids (``zhangsan``, ``zhang.san``) stay as they are.
"""

from urllib.parse import quote, unquote

from django.urls import register_converter

#: The converter's name in ``path()`` patterns.
NAME = "wecomid"

_SAFE = "-_.~"


class WeComIdConverter:
    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return unquote(value, errors="strict")

    def to_url(self, value) -> str:
        text = str(value)
        if not text:
            raise ValueError("an empty id has no URL")
        if not text.strip("."):
            return "%2E" * len(text)  # "." and ".." would be dot segments
        return "".join(char if ord(char) > 127 else quote(char, safe=_SAFE) for char in text)


register_converter(WeComIdConverter, NAME)

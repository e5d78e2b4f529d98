"""Temporary media (素材): media/upload, multipart like WeCom's, with its size and type rules (40004, 40005,
40006, 44001), and media ids that expire after 3 days (40007 when a message uses one).

https://developer.work.weixin.qq.com/document/path/90253
"""

from __future__ import annotations

import hashlib
import secrets
from email.message import Message

from .base import _APP, _ApiError, _Request, _Route

MEDIA_TTL = 3 * 86400  # a temporary media_id lives 3 days (doc 90253)
# type -> (largest size in bytes, allowed file extensions or None for any); smallest is 5 bytes.
MEDIA_RULES = {
    "image": (10 * 1024 * 1024, {"jpg", "jpeg", "png"}),
    "voice": (2 * 1024 * 1024, {"amr"}),
    "video": (10 * 1024 * 1024, {"mp4"}),
    "file": (20 * 1024 * 1024, None),
}

ROUTES = {
    "media/upload": _Route("POST", _APP, "_api_media_upload"),
}


class MediaAPI:
    """Media uploads and their lifetime.

    A mixin of FakeWeCom (core.py): its state (``org``, ``_lock``, the clock …) lives on FakeWeCom; route handlers
    are looked up by the names in ROUTES."""

    def _api_media_upload(self, request: _Request) -> dict:
        """https://developer.work.weixin.qq.com/document/path/90253"""
        media_type = request.param("type")
        if media_type not in MEDIA_RULES:
            raise _ApiError(40005)
        part = _multipart_file(request.headers.get("Content-Type", ""), request.body, "media")
        if part is None or not part[1]:
            raise _ApiError(44001)
        filename, data = part
        max_size, extensions = MEDIA_RULES[media_type]
        if not 5 <= len(data) <= max_size:
            raise _ApiError(40006)
        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        if extensions is not None and extension not in extensions:
            raise _ApiError(40004)
        media_id = "3" + secrets.token_urlsafe(48)[:63]
        created_at = str(int(self.now()))
        with self._lock:
            self.media[media_id] = {"type": media_type, "filename": filename, "size": len(data),
                                    "created_at": created_at,
                                    "sha256": hashlib.sha256(data).hexdigest()}
        return {"type": media_type, "media_id": media_id, "created_at": created_at}

    def _check_media(self, media_id) -> None:
        """A temporary media_id lives 3 days; after that WeCom answers 40007 (doc 90253).
        https://developer.work.weixin.qq.com/document/path/90253"""
        if not media_id:
            raise _ApiError(41006)
        media = self.media.get(media_id)
        if media is None or int(media["created_at"]) + MEDIA_TTL <= self.now():
            raise _ApiError(40007)


def _multipart_file(content_type: str, body: bytes, field: str) -> tuple[str, bytes] | None:
    """The (filename, bytes) of one multipart/form-data field, or None."""
    header = Message()
    header["Content-Type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        return None
    boundary = header.get_param("boundary")
    if not boundary:
        return None
    delimiter = b"--" + str(boundary).encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        disposition = Message()
        for line in head.decode("utf-8", errors="replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon and name.strip().lower() == "content-disposition":
                disposition["Content-Disposition"] = value.strip()
        if disposition.get_param("name", header="content-disposition") == field:
            filename = disposition.get_filename() or ""
            return filename, data
    return None

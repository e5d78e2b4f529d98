from wecom_integration.client.base import BaseAPI

MEDIA_TYPES = ("image", "voice", "video", "file")


class MediaAPI(BaseAPI):
    def upload(self, media_type, filename, fileobj_or_bytes):
        """Upload a temporary file (kept 3 days) for image/voice/video/file messages: {type, media_id,
        created_at}. https://developer.work.weixin.qq.com/document/path/90253
        """
        if media_type not in MEDIA_TYPES:
            raise ValueError(f"media_type must be one of {MEDIA_TYPES}")
        # Read once, so a retried upload sends the same bytes instead of an exhausted file object.
        if isinstance(fileobj_or_bytes, bytes | bytearray):
            content = bytes(fileobj_or_bytes)
        else:
            content = fileobj_or_bytes.read()
        files = {"media": (filename, content, "application/octet-stream")}
        return self._post("media/upload", params={"type": media_type}, files=files)

"""Encryption at rest for secrets, Tokens and AES keys.

``WECOM["FIELD_KEYS"]`` (or its alias ``WECOM_FIELD_KEYS``) holds one or more keys (any strings; each
is stretched to a Fernet key). The first encrypts, every key decrypts, so a key is rotated by putting the
new one first and running ``manage.py wecom_rotate_keys``.
Without keys (a laptop), a key is derived from ``SECRET_KEY``.

cryptography's MultiFernet is used rather than hand-made AES: it authenticates the ciphertext and does
the rotation bookkeeping for us.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import models

from wecom_integration.conf import wecom_settings

PREFIX = "enc1:"


def _fernet_key(material: str) -> bytes:
    digest = hashlib.sha256(b"wecom-integration-field-key\0" + material.encode()).digest()
    return base64.urlsafe_b64encode(digest)


@lru_cache(maxsize=1)
def _keyring() -> MultiFernet:
    keys = list(wecom_settings.FIELD_KEYS or []) or [settings.SECRET_KEY]
    return MultiFernet([Fernet(_fernet_key(key)) for key in keys])


def _clear_keyring(*, setting, **kwargs):
    if setting in ("WECOM", "WECOM_FIELD_KEYS", "SECRET_KEY"):
        _keyring.cache_clear()


setting_changed.connect(_clear_keyring)


def encrypt_value(plaintext: str) -> str:
    return PREFIX + _keyring().encrypt(plaintext.encode()).decode()


def decrypt_value(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ImproperlyConfigured("An encrypted field holds a value that was not written by this app.")
    try:
        return _keyring().decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        # Never include the stored value: say what to fix instead.
        raise ImproperlyConfigured(
            "A stored WeCom secret cannot be decrypted with WECOM_FIELD_KEYS: the key that encrypted it "
            "is missing. Add the old key after the new one."
        ) from None


def rotate_value(stored: str) -> str:
    """Re-encrypt a stored value under the first key."""
    return PREFIX + _keyring().rotate(stored[len(PREFIX):].encode()).decode()


class EncryptedTextField(models.TextField):
    """A text field stored encrypted; the empty string is stored as is ("not configured").

    ``allow_plaintext=True`` (personal data that used to be stored in clear, such as a member's mobile)
    reads a value without the prefix as it is, so rows written before the field was encrypted, or by
    the previous release during a rolling upgrade, stay readable; every write encrypts. Secrets never
    allow it: a secret that is not ours is an error.
    """

    def __init__(self, *args, allow_plaintext=False, **kwargs):
        self.allow_plaintext = allow_plaintext
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if self.allow_plaintext:
            kwargs["allow_plaintext"] = True
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        if self.allow_plaintext and not value.startswith(PREFIX):
            return value
        return decrypt_value(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value or ""
        return encrypt_value(value)

"""Encryption at rest for secrets, Tokens and AES keys.

``WECOM["FIELD_KEYS"]`` (or its alias ``WECOM_FIELD_KEYS``) holds one or more keys (any strings; each
is stretched to a Fernet key). The first encrypts, every key decrypts, so a key is rotated by putting the
new one first and running ``manage.py wecom_rotate_keys``.
Without keys (a laptop), a key is derived from ``SECRET_KEY``.

cryptography's MultiFernet is used rather than hand-made AES: it authenticates the ciphertext and does
the rotation bookkeeping for us.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache

from Crypto.Cipher import AES
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


def _key_materials() -> list:
    return list(wecom_settings.FIELD_KEYS or []) or [settings.SECRET_KEY]


@lru_cache(maxsize=1)
def _keyring() -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(key)) for key in _key_materials()])


@lru_cache(maxsize=1)
def _raw_keys() -> tuple:
    """(HMAC-SHA256 state keyed with the signing half, AES-128 key) of each key, in the keyring's order:
    a Fernet key is the signing key's 16 bytes followed by the encryption key's 16."""
    keys = []
    for material in _key_materials():
        raw = base64.urlsafe_b64decode(_fernet_key(material))
        keys.append((hmac.new(raw[:16], digestmod=hashlib.sha256), raw[16:]))
    return tuple(keys)


def _clear_keyring(*, setting, **kwargs):
    if setting in ("WECOM", "WECOM_FIELD_KEYS", "SECRET_KEY"):
        _keyring.cache_clear()
        _raw_keys.cache_clear()


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


# A Fernet token: version (0x80), 8-byte time stamp, 16-byte IV, AES-128-CBC ciphertext of whole
# blocks, HMAC-SHA256 of all that (https://github.com/fernet/spec/blob/master/Spec.md).
_FERNET_VERSION = 0x80
_FERNET_HEAD = 1 + 8
_FERNET_MAC = 32
_FERNET_SHORTEST = _FERNET_HEAD + 16 + 16 + _FERNET_MAC


def decrypt_values(stored_values: Sequence[str], *, allow_plaintext: bool = False) -> list[str]:
    """:func:`decrypt_value` of each of ``stored_values``, as an :class:`EncryptedTextField` reads them
    (the empty string as it is; with ``allow_plaintext`` a value without the prefix as it is), for reading
    many rows at once: a contact sync's confirm reads the e-mail of up to 100,000 members.

    The same tokens, the same keys, the same answers as :func:`decrypt_value`, which decrypts one value
    through cryptography's Fernet: building its HMAC and cipher objects cost ~40 µs a value, more than the
    rest of the confirm's work on that member (issue 19). Here each token's HMAC is checked first (a copy
    of the key's HMAC state, compared in constant time), trying the keys in the keyring's order as
    MultiFernet does; then the ciphertexts of all the tokens one key opened are deciphered in one AES-CBC
    call, each preceded by its IV: CBC deciphers a block with the ciphertext block before it, so each
    token's first block takes its own IV, and what comes out for the IV itself is dropped. A value this
    path does not open (a bad token, a missing key, bad padding) goes through :func:`decrypt_value`,
    which opens it or raises its error.
    """
    out = list(stored_values)
    keys = _raw_keys()
    chains = [[] for _ in keys]  # per key: (index in out, token bytes)
    prefix = len(PREFIX)
    for index, stored in enumerate(out):
        if not stored:
            continue
        if not stored.startswith(PREFIX):
            if not allow_plaintext:
                decrypt_value(stored)  # raises: not written by this app
            continue
        try:
            data = base64.urlsafe_b64decode(stored[prefix:])
        except (binascii.Error, ValueError):
            out[index] = decrypt_value(stored)  # raises InvalidToken's error
            continue
        size = len(data)
        if size < _FERNET_SHORTEST or data[0] != _FERNET_VERSION or (size - _FERNET_SHORTEST) % 16:
            out[index] = decrypt_value(stored)
            continue
        signed, mac = data[:-_FERNET_MAC], data[-_FERNET_MAC:]
        for chain, (signer, _aes_key) in zip(chains, keys, strict=True):
            check = signer.copy()
            check.update(signed)
            if hmac.compare_digest(check.digest(), mac):
                chain.append((index, data))
                break
        else:
            out[index] = decrypt_value(stored)
    for chain, (_signer, aes_key) in zip(chains, keys, strict=True):
        if not chain:
            continue
        blocks = b"".join([data[_FERNET_HEAD:-_FERNET_MAC] for _index, data in chain])
        plain = AES.new(aes_key, AES.MODE_CBC, bytes(16)).decrypt(blocks)
        at = 0
        for index, data in chain:
            end = at + len(data) - _FERNET_HEAD - _FERNET_MAC
            text = plain[at + 16:end]  # after what came out for the IV
            at = end
            pad = text[-1]
            if not 1 <= pad <= 16 or text[-pad:] != bytes((pad,)) * pad:
                out[index] = decrypt_value(out[index])
                continue
            try:
                out[index] = text[:-pad].decode()
            except UnicodeDecodeError:
                out[index] = decrypt_value(out[index])
    return out


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

"""fields.decrypt_values: many stored values opened at once, with the answers and errors of decrypt_value."""

import base64
import hashlib
import hmac
import os

import pytest
from Crypto.Cipher import AES
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from wecom_integration.fields import PREFIX, _fernet_key, decrypt_value, decrypt_values, encrypt_value

TEXTS = ["", "a", "x" * 15, "y" * 16, "z" * 17, "陈某某@例子.公司", "mobile: +86 138 0000 0000", "é" * 300]


def forged(plaintext: bytes, material: str, *, pad: bytes | None = None, version: int = 0x80) -> str:
    """A token signed with the key of ``material``, with the padding and version given: what an attacker
    who held the key could write, to reach the checks behind the HMAC."""
    raw = base64.urlsafe_b64decode(_fernet_key(material))
    if pad is None:
        n = 16 - len(plaintext) % 16
        pad = bytes((n,)) * n
    iv = os.urandom(16)
    body = bytes((version,)) + (1_700_000_000).to_bytes(8, "big") + iv
    body += AES.new(raw[16:], AES.MODE_CBC, iv).encrypt(plaintext + pad)
    mac = hmac.digest(raw[:16], body, hashlib.sha256)
    return PREFIX + base64.urlsafe_b64encode(body + mac).decode()


@override_settings(WECOM_FIELD_KEYS=["key-one"])
def test_same_answers_as_decrypt_value_for_many_values():
    stored = [encrypt_value(text) if text else "" for text in TEXTS * 40]
    assert decrypt_values(stored) == [decrypt_value(v) if v else "" for v in stored] == TEXTS * 40


def test_every_key_of_the_keyring_opens_its_own_values_in_order():
    with override_settings(WECOM_FIELD_KEYS=["old-key"]):
        old = [encrypt_value(f"old {i}") for i in range(5)]
    with override_settings(WECOM_FIELD_KEYS=["new-key"]):
        new = [encrypt_value(f"new {i}") for i in range(5)]
    mixed = [v for pair in zip(old, new, strict=True) for v in pair]
    with override_settings(WECOM_FIELD_KEYS=["new-key", "old-key"]):
        assert decrypt_values(mixed) == [decrypt_value(v) for v in mixed]
        assert decrypt_values(mixed)[:4] == ["old 0", "new 0", "old 1", "new 1"]
    with override_settings(WECOM_FIELD_KEYS=["new-key"]):
        with pytest.raises(ImproperlyConfigured, match="WECOM_FIELD_KEYS") as excinfo:
            decrypt_values(mixed)
        assert "old 0" not in str(excinfo.value)


@override_settings(WECOM_FIELD_KEYS=["key-one"])
def test_plaintext_only_where_allowed():
    values = ["plain@example.com", encrypt_value("secret@example.com"), ""]
    assert decrypt_values(values, allow_plaintext=True) == ["plain@example.com", "secret@example.com", ""]
    with pytest.raises(ImproperlyConfigured, match="not written by this app"):
        decrypt_values(values)


def _flip(stored: str, at: int) -> str:
    data = bytearray(base64.urlsafe_b64decode(stored[len(PREFIX):]))
    data[at] ^= 0x01
    return PREFIX + base64.urlsafe_b64encode(bytes(data)).decode()


@override_settings(WECOM_FIELD_KEYS=["key-one"])
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda v: _flip(v, 30), id="ciphertext"),
        pytest.param(lambda v: _flip(v, 12), id="iv"),
        pytest.param(lambda v: _flip(v, -1), id="mac"),
        pytest.param(lambda v: _flip(v, 0), id="version"),
        pytest.param(lambda v: v[:-8], id="truncated"),
        pytest.param(lambda v: v[:-3] + "!!=", id="not-base64"),
        pytest.param(lambda v: PREFIX + "AAAA", id="too-short"),
        pytest.param(lambda v: forged(b"fine", "key-one", pad=b"\x00" * 12), id="zero-padding"),
        pytest.param(lambda v: forged(b"fine", "key-one", pad=b"\x05" * 11 + b"\x0c"), id="wrong-padding"),
        pytest.param(lambda v: forged(b"fine" * 4, "key-one", pad=b"\x11" * 16), id="padding-over-a-block"),
        pytest.param(lambda v: forged(b"\xff\xfe", "key-one"), id="not-utf8"),
        pytest.param(lambda v: forged(b"fine", "key-one", version=0x81), id="signed-other-version"),
        pytest.param(lambda v: forged(b"fine", "another-key"), id="other-key"),
    ],
)
def test_a_bad_value_among_good_ones_fails_as_decrypt_value_does(tamper):
    good = [encrypt_value(f"member{i}@example.com") for i in range(6)]
    bad = tamper(encrypt_value("victim@example.com"))
    with pytest.raises(Exception) as single:
        decrypt_value(bad)
    with pytest.raises(type(single.value)) as many:
        decrypt_values([*good[:3], bad, *good[3:]])
    assert str(many.value) == str(single.value)
    assert "victim" not in str(many.value)


@override_settings(WECOM_FIELD_KEYS=["key-one"])
def test_what_base64_leaves_after_the_padding_is_read_as_fernet_reads_it():
    stored = encrypt_value("member@example.com")
    assert stored.endswith("=")
    assert decrypt_values([stored + "AAAA"]) == [decrypt_value(stored + "AAAA")] == ["member@example.com"]


@override_settings(WECOM_FIELD_KEYS=["key-one"])
def test_a_forged_token_with_good_padding_opens_as_fernet_opens_it():
    # The checks are the same as Fernet's: a token signed with our key and padded right is ours.
    token = forged("签名 ok".encode(), "key-one")
    assert decrypt_values([token]) == [decrypt_value(token)] == ["签名 ok"]

"""The callback cipher against WeCom's published vectors, hand-built bad inputs, and properties."""

import base64
import struct
from concurrent.futures import ThreadPoolExecutor

import defusedxml.ElementTree as DET
import pytest
from Crypto.Cipher import AES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wecom_integration.crypto import (
    ComputeSignatureError,
    DecodeBase64Error,
    DecryptAESError,
    EncryptAESError,
    Envelope,
    GenReturnXmlError,
    IllegalAesKey,
    IllegalBuffer,
    ParseXmlError,
    ValidateCorpidError,
    ValidateSignatureError,
    WeComCrypto,
    WeComCryptoError,
    parse_envelope,
    signature,
)

# Vectors from wecom-facts.md (wechatpy's test suite).
TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
RECEIVE_ID = "wx49f0ab532d5d035a"
V1 = {
    "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
    "timestamp": "1411443780",
    "nonce": "437374425",
    "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
}
V2 = {
    "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    "timestamp": "1411525903",
    "nonce": "461056294",
    "encrypt": (
        "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv"
        "283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cv"
        "kKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFx"
        "dgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6G"
        "DnTbcX2e8K9QaNWHp91eBdCRxthuL0="
    ),
}
KEY_BYTES = base64.b64decode(AES_KEY + "=")
TS = "1700000000"
NONCE = "1234567890"


@pytest.fixture
def crypto():
    return WeComCrypto(TOKEN, AES_KEY, RECEIVE_ID)


def seal(plaintext: bytes, key: bytes = KEY_BYTES) -> str:
    """AES-256-CBC over bytes already laid out and padded by the test, as base64."""
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(plaintext)).decode()


def pad32(data: bytes) -> bytes:
    n = 32 - len(data) % 32
    return data + bytes([n]) * n


def layout(message: bytes, receive_id: bytes = RECEIVE_ID.encode(), length: int | None = None) -> bytes:
    length = len(message) if length is None else length
    return b"R" * 16 + struct.pack(">I", length) + message + receive_id


def decrypt_signed(crypto: WeComCrypto, encrypt: str) -> str:
    """Decrypt with a correct signature, so the checks behind the signature are reached."""
    return crypto.decrypt(signature(TOKEN, TS, NONCE, encrypt), TS, NONCE, encrypt)


def assert_error(excinfo, cls, code, reason):
    assert type(excinfo.value) is cls
    assert excinfo.value.code == code
    assert excinfo.value.reason == reason


# The published vectors.


def test_vector1_url_verification(crypto):
    assert crypto.verify_url(**V1) == "5927782489442352469"


def test_vector1_with_another_nonce_fails_signature(crypto):
    with pytest.raises(ValidateSignatureError) as excinfo:
        crypto.verify_url(**{**V1, "nonce": "437374424"})
    assert_error(excinfo, ValidateSignatureError, -40001, "bad_signature")


def test_vector2_message(crypto):
    xml = crypto.decrypt(V2["msg_signature"], V2["timestamp"], V2["nonce"], V2["encrypt"])
    root = DET.fromstring(xml)
    assert root.findtext("FromUserName") == "messense"
    assert root.findtext("Content") == "test"
    assert root.findtext("MsgId") == "4363689963896700987"
    assert root.findtext("AgentID") == "1"


def test_signature_function_matches_vector():
    assert signature(TOKEN, V1["timestamp"], V1["nonce"], V1["echostr"]) == V1["msg_signature"]
    assert signature(TOKEN, int(V1["timestamp"]), V1["nonce"], V1["echostr"]) == V1["msg_signature"]


def test_plus_turned_into_space_is_not_repaired(crypto):
    # A naive form decoder turns '+' into ' '; the cipher must refuse rather than guess.
    with pytest.raises(WeComCryptoError):
        crypto.verify_url(**{**V1, "echostr": V1["echostr"].replace("+", " ")})


def test_key_spare_bits_are_ignored():
    # The vector's key ends in 'R', whose two spare bits are not zero, so such keys must be accepted;
    # 'Q' differs only in those bits and is the same AES key.
    other = WeComCrypto(TOKEN, AES_KEY[:-1] + "Q", RECEIVE_ID)
    assert other.verify_url(**V1) == "5927782489442352469"


def test_repr_hides_secrets(crypto):
    assert TOKEN not in repr(crypto)
    assert AES_KEY not in repr(crypto)
    assert RECEIVE_ID in repr(crypto)


# Round trips.


def test_encrypt_uses_a_fresh_prefix_each_time(crypto):
    first, _ = crypto.encrypt("<xml/>", NONCE, TS)
    second, _ = crypto.encrypt("<xml/>", NONCE, TS)
    assert first != second
    assert decrypt_signed(crypto, first) == decrypt_signed(crypto, second) == "<xml/>"


def test_encrypt_accepts_int_timestamp(crypto):
    encrypt, sig = crypto.encrypt("hello", NONCE, 1700000000)
    assert crypto.decrypt(sig, "1700000000", NONCE, encrypt) == "hello"


def test_empty_receive_id_round_trips():
    crypto = WeComCrypto(TOKEN, AES_KEY, "")
    encrypt, sig = crypto.encrypt("x", NONCE, TS)
    assert crypto.decrypt(sig, TS, NONCE, encrypt) == "x"


def test_shared_instance_decrypts_correctly_across_threads(crypto):
    messages = [f"<xml><N>{i}</N></xml>" * (i % 7 + 1) for i in range(400)]
    sealed = [crypto.encrypt(m, NONCE, TS) for m in messages]
    with ThreadPoolExecutor(max_workers=8) as pool:
        opened = list(pool.map(lambda pair: crypto.decrypt(pair[1], TS, NONCE, pair[0]), sealed))
    assert opened == messages


def test_each_decryption_starts_from_the_iv_whatever_the_last_one_read(crypto):
    # The key's cipher object is kept between calls: a refused ciphertext (another key's, or one cut short of
    # its padding block) must leave nothing behind for the next callback.
    encrypt, sig = crypto.encrypt("<xml>ok</xml>", NONCE, TS)
    other, other_sig = WeComCrypto(TOKEN, base64.b64encode(bytes(32)).decode()[:-1], RECEIVE_ID).encrypt("x", NONCE, TS)
    cut = base64.b64encode(base64.b64decode(encrypt)[:-32]).decode()
    for bad, bad_sig in ((other, other_sig), (cut, signature(TOKEN, TS, NONCE, cut))):
        with pytest.raises(WeComCryptoError):
            crypto.decrypt(bad_sig, TS, NONCE, bad)
        assert crypto.decrypt(sig, TS, NONCE, encrypt) == "<xml>ok</xml>"


keys = st.binary(min_size=32, max_size=32).map(lambda raw: base64.b64encode(raw).decode()[:-1])
tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=32)
nonces = st.text(alphabet="0123456789abcdef", min_size=1, max_size=16)


@settings(max_examples=200)
@given(
    message=st.text(),
    key=keys,
    token=tokens,
    receive_id=st.text(),
    nonce=nonces,
    timestamp=st.integers(min_value=0, max_value=2**40),
)
def test_encrypt_decrypt_round_trip(message, key, token, receive_id, nonce, timestamp):
    crypto = WeComCrypto(token, key, receive_id)
    encrypt, sig = crypto.encrypt(message, nonce, timestamp)
    assert len(base64.b64decode(encrypt)) % 32 == 0
    assert crypto.decrypt(sig, str(timestamp), nonce, encrypt) == message


@settings(max_examples=200)
@given(message=st.text(), key=keys, token=tokens, receive_id=st.text())
def test_build_reply_parse_envelope_decrypt_round_trip(message, key, token, receive_id):
    crypto = WeComCrypto(token, key, receive_id)
    reply = crypto.build_reply(message)
    root = DET.fromstring(reply)
    assert [child.tag for child in root] == ["Encrypt", "MsgSignature", "TimeStamp", "Nonce"]
    envelope = parse_envelope(reply.encode())
    assert envelope == Envelope(encrypt=root.findtext("Encrypt"), to_user_name=None, agent_id=None)
    opened = crypto.decrypt(
        root.findtext("MsgSignature"), root.findtext("TimeStamp"), root.findtext("Nonce"), envelope.encrypt
    )
    assert opened == message


def test_build_reply_signs_its_own_values(crypto):
    reply = crypto.build_reply("<xml/>", nonce="n]]>once", timestamp=1700000001)
    root = DET.fromstring(reply)
    assert root.findtext("TimeStamp") == "1700000001"
    assert root.findtext("Nonce") == "n]]>once"
    assert root.findtext("MsgSignature") == signature(TOKEN, "1700000001", "n]]>once", root.findtext("Encrypt"))


def test_parse_envelope_reads_routing_hints():
    body = (
        b"<xml><ToUserName><![CDATA[ww1234567890abcdef]]></ToUserName>"
        b"<Encrypt><![CDATA[QUJD]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    assert parse_envelope(body) == Envelope(encrypt="QUJD", to_user_name="ww1234567890abcdef", agent_id="1000002")


# One test per error code.


@pytest.mark.parametrize(
    "key",
    [
        AES_KEY[:-1],  # 42 characters
        AES_KEY + "A",  # 44 characters
        AES_KEY[:-1] + "*",  # not base64
        AES_KEY[:-1] + "=",  # padding inside the 43 characters
        "",
        None,
        b"kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    ],
)
def test_illegal_aes_key_in_constructor(key):
    with pytest.raises(IllegalAesKey) as excinfo:
        WeComCrypto(TOKEN, key, RECEIVE_ID)
    assert_error(excinfo, IllegalAesKey, -40004, "bad_aes_key")


@pytest.mark.parametrize("token", ["", None, 123])
def test_bad_token_in_constructor(token):
    with pytest.raises(ComputeSignatureError) as excinfo:
        WeComCrypto(token, AES_KEY, RECEIVE_ID)
    assert_error(excinfo, ComputeSignatureError, -40003, "bad_token")


def test_bad_receive_id_in_constructor():
    with pytest.raises(ValidateCorpidError) as excinfo:
        WeComCrypto(TOKEN, AES_KEY, None)
    assert_error(excinfo, ValidateCorpidError, -40005, "bad_receive_id")


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"msg_signature": ""}, "missing_signature"),
        ({"msg_signature": None}, "missing_signature"),
        ({"timestamp": ""}, "missing_timestamp"),
        ({"timestamp": None}, "missing_timestamp"),
        ({"nonce": None}, "missing_nonce"),
        ({"nonce": ""}, "missing_nonce"),
        ({"msg_signature": V1["msg_signature"].upper()}, "bad_signature"),
        ({"msg_signature": "é" * 40}, "bad_signature"),
        ({"timestamp": "1411443781"}, "bad_signature"),
    ],
)
def test_validate_signature_error(crypto, changes, reason):
    with pytest.raises(ValidateSignatureError) as excinfo:
        crypto.verify_url(**{**V1, **changes})
    assert_error(excinfo, ValidateSignatureError, -40001, reason)


def test_signature_is_checked_before_decryption(crypto):
    # Bad padding behind a bad signature must look like any other bad signature: no padding oracle.
    body = layout(b"<xml/>")
    encrypt = seal(body + b"F" * (-len(body) % 32) + bytes(32))
    with pytest.raises(DecryptAESError):
        decrypt_signed(crypto, encrypt)
    with pytest.raises(ValidateSignatureError):
        crypto.decrypt("0" * 40, TS, NONCE, encrypt)


def test_compute_signature_error(crypto):
    with pytest.raises(ComputeSignatureError) as excinfo:
        crypto.decrypt(V2["msg_signature"], V2["timestamp"].encode(), V2["nonce"], V2["encrypt"])
    assert_error(excinfo, ComputeSignatureError, -40003, "bad_signature_input")
    with pytest.raises(ComputeSignatureError):
        signature(TOKEN, TS, "\ud800", "abc")
    with pytest.raises(ComputeSignatureError):
        signature(TOKEN, TS, NONCE, b"abc")


def test_receive_id_mismatch(crypto):
    other = WeComCrypto(TOKEN, AES_KEY, "ww0000000000000000")
    encrypt, sig = other.encrypt("<xml/>", NONCE, TS)
    with pytest.raises(ValidateCorpidError) as excinfo:
        crypto.decrypt(sig, TS, NONCE, encrypt)
    assert_error(excinfo, ValidateCorpidError, -40005, "receiveid_mismatch")


def test_receive_id_compared_exactly(crypto):
    # A receiveid that merely starts with ours (or that we merely start with) is someone else's.
    for tail in (RECEIVE_ID.encode() + b"x", RECEIVE_ID.encode()[:-1], RECEIVE_ID.upper().encode()):
        with pytest.raises(ValidateCorpidError):
            decrypt_signed(crypto, seal(pad32(layout(b"<xml/>", receive_id=tail))))


@pytest.mark.parametrize("message", [123, None, "bad \ud800 surrogate"])
def test_encrypt_aes_error(crypto, message):
    with pytest.raises(EncryptAESError) as excinfo:
        crypto.encrypt(message, NONCE, TS)
    assert excinfo.value.code == -40006


def test_truncated_ciphertext(crypto):
    raw = base64.b64decode(V2["encrypt"])
    with pytest.raises(DecryptAESError) as excinfo:
        decrypt_signed(crypto, base64.b64encode(raw[:-5]).decode())
    assert_error(excinfo, DecryptAESError, -40007, "bad_ciphertext_length")


@pytest.mark.parametrize(
    "tail",
    [
        bytes([0]) * 32,  # pad value 0
        bytes([33]) * 32,  # pad value above the 32-byte block
        bytes([5, 5, 5, 4, 5]),  # pad bytes disagree
        bytes([7]) * 6 + bytes([2, 7]),  # disagreement right before the last byte
    ],
)
def test_bad_padding(crypto, tail):
    body = layout(b"<xml/>")
    filler = (-(len(body) + len(tail))) % 32
    plaintext = body + b"F" * filler + tail
    assert len(plaintext) % 32 == 0
    with pytest.raises(DecryptAESError) as excinfo:
        decrypt_signed(crypto, seal(plaintext))
    assert_error(excinfo, DecryptAESError, -40007, "bad_padding")


def test_ciphertext_sealed_with_another_key_fails(crypto):
    other_key = bytes(range(32))
    with pytest.raises(WeComCryptoError) as excinfo:
        decrypt_signed(crypto, seal(pad32(layout(b"<xml/>")), key=other_key))
    assert excinfo.value.code in (-40007, -40008, -40005)


def test_length_field_overrun(crypto):
    with pytest.raises(IllegalBuffer) as excinfo:
        decrypt_signed(crypto, seal(pad32(layout(b"<xml/>", length=10_000))))
    assert_error(excinfo, IllegalBuffer, -40008, "length_overrun")
    # Overrunning by one byte into the padding is still an overrun.
    body = layout(b"<xml/>", receive_id=b"", length=len(b"<xml/>") + 1)
    with pytest.raises(IllegalBuffer):
        decrypt_signed(crypto, seal(pad32(body)))


def test_plaintext_shorter_than_header(crypto):
    with pytest.raises(IllegalBuffer) as excinfo:
        decrypt_signed(crypto, seal(pad32(b"R" * 16 + b"\x00\x00")))
    assert_error(excinfo, IllegalBuffer, -40008, "too_short")


def test_message_not_utf8(crypto):
    with pytest.raises(IllegalBuffer) as excinfo:
        decrypt_signed(crypto, seal(pad32(layout("<xml>测试</xml>".encode("gbk")))))
    assert_error(excinfo, IllegalBuffer, -40008, "not_utf8")


@pytest.mark.parametrize(
    "encrypt, reason",
    [
        ("", "missing_ciphertext"),
        (None, "missing_ciphertext"),
        ("@@@@", "bad_base64"),
        ("QUJD\n", "bad_base64"),
        ("QUI", "bad_base64"),  # padding missing
        ("QQ", "bad_base64"),
        ("QUJDé", "bad_base64"),
    ],
)
def test_decode_base64_error(crypto, encrypt, reason):
    with pytest.raises(DecodeBase64Error) as excinfo:
        if encrypt:
            decrypt_signed(crypto, encrypt)
        else:
            crypto.decrypt("0" * 40, TS, NONCE, encrypt)
    assert_error(excinfo, DecodeBase64Error, -40010, reason)


@pytest.mark.parametrize("changes", [{"timestamp": "12a"}, {"timestamp": "-1"}, {"nonce": "bad\x00nonce"}])
def test_gen_return_xml_error(crypto, changes):
    with pytest.raises(GenReturnXmlError) as excinfo:
        crypto.build_reply("<xml/>", **{"nonce": NONCE, "timestamp": TS, **changes})
    assert excinfo.value.code == -40011


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><Encrypt>&lol3;</Encrypt></xml>"""


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"<!DOCTYPE xml><xml><Encrypt>QUJD</Encrypt></xml>", "forbidden_dtd"),
        (b'<!DOCTYPE xml [<!ENTITY e "QUJD">]><xml><Encrypt>&e;</Encrypt></xml>', "forbidden_dtd"),
        (BILLION_LAUGHS, "forbidden_dtd"),
        (b'<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><Encrypt>QUJD</Encrypt></xml>', "forbidden_dtd"),
        (b"<xml><Encrypt>QUJD</Encrypt>", "malformed_xml"),
        (b"", "malformed_xml"),
        (b"<xml><Encrypt>QUJD</Encrypt></xml><xml/>", "malformed_xml"),
        (b"<xml><Encrypt>&undefined;</Encrypt></xml>", "malformed_xml"),
        ("<xml><Encrypt>测试</Encrypt></xml>".encode("gbk"), "not_utf8"),
        (b"\xff\xfe<\x00x\x00m\x00l\x00/\x00>\x00", "not_utf8"),
        (b"<xml><ToUserName>ww1</ToUserName></xml>", "no_encrypt"),
        (b"<xml><Inner><Encrypt>QUJD</Encrypt></Inner></xml>", "no_encrypt"),
        (b"<xml><Encrypt>QUJD</Encrypt><Encrypt>QUJE</Encrypt></xml>", "duplicate_encrypt"),
        (b"<xml><Encrypt><![CDATA[]]></Encrypt></xml>", "empty_encrypt"),
        (b"<xml><Encrypt>  </Encrypt></xml>", "empty_encrypt"),
        (b"<xml><Encrypt>QUJD<b/></Encrypt></xml>", "bad_encrypt"),
        (b"<root><Encrypt>QUJD</Encrypt></root>", "bad_root"),
        (12345, "not_xml"),
        (None, "not_xml"),
    ],
)
def test_parse_envelope_errors(body, reason):
    with pytest.raises(ParseXmlError) as excinfo:
        parse_envelope(body)
    assert_error(excinfo, ParseXmlError, -40002, reason)


def test_parse_envelope_ignores_declared_encoding():
    # The bytes are UTF-8 whatever the declaration claims; they are not reinterpreted as GBK.
    body = '<?xml version="1.0" encoding="GBK"?><xml><ToUserName>测试</ToUserName><Encrypt>QUJD</Encrypt></xml>'
    assert parse_envelope(body.encode()).to_user_name == "测试"


# Fuzz: nothing but WeComCryptoError may escape.

anything = st.one_of(st.none(), st.text(), st.binary(), st.integers(), st.booleans())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(msg_signature=anything, timestamp=anything, nonce=anything, encrypt=anything)
def test_fuzz_decrypt_raises_only_crypto_errors(crypto, msg_signature, timestamp, nonce, encrypt):
    try:
        crypto.decrypt(msg_signature, timestamp, nonce, encrypt)
    except WeComCryptoError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(encrypt=st.one_of(st.text(min_size=1), st.binary(min_size=1).map(lambda b: base64.b64encode(b).decode())))
def test_fuzz_signed_ciphertext_raises_only_crypto_errors(crypto, encrypt):
    # Correctly signed, so the base64, length and padding checks are what gets exercised.
    try:
        decrypt_signed(crypto, encrypt)
    except WeComCryptoError:
        pass


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plaintext=st.binary(max_size=200), pad=st.integers(min_value=0, max_value=255))
def test_fuzz_decrypted_layout_raises_only_crypto_errors(crypto, plaintext, pad):
    # Any block-aligned plaintext, sealed with the right key and signed: exercises every check
    # after decryption (padding, header, length field, receiveid, UTF-8).
    plaintext += bytes([pad]) * (-len(plaintext) % 16 or 16)
    try:
        result = decrypt_signed(crypto, seal(plaintext))
    except WeComCryptoError:
        return
    assert isinstance(result, str)


@settings(max_examples=300)
@given(body=st.one_of(st.binary(), st.text(), st.none(), st.integers()))
def test_fuzz_parse_envelope_raises_only_crypto_errors(body):
    try:
        envelope = parse_envelope(body)
    except WeComCryptoError as exc:
        assert exc.code == -40002
        return
    assert envelope.encrypt


xml_text = st.text(alphabet=st.sampled_from(list("<>/![]CDAT-=\"' &;xmlEncrypt?") + ["\x00", "é"]))


@settings(max_examples=300)
@given(inner=xml_text)
def test_fuzz_parse_envelope_near_valid_xml(inner):
    for body in (f"<xml><Encrypt>{inner}</Encrypt></xml>", f"<xml>{inner}</xml>"):
        try:
            parse_envelope(body.encode("utf-8", "surrogatepass"))
        except WeComCryptoError as exc:
            assert exc.code == -40002


# Strict padding (issue 20): WeCom pads to 32-byte blocks, so a plaintext padded to 16 only is refused.


def _padded_to_16_only(message: bytes) -> bytes:
    """``layout(message)`` with valid 16-byte-block PKCS#7, its length a multiple of 16 but not of 32."""
    body = layout(message)
    if (len(body) + 16 - len(body) % 16) % 32 == 0:
        body = layout(message + b" " * 16)
    pad = 16 - len(body) % 16
    plaintext = body + bytes([pad]) * pad
    assert len(plaintext) % 16 == 0 and len(plaintext) % 32 == 16
    return plaintext


@pytest.mark.parametrize("message", [b"<xml/>", b"<xml><a>1</a></xml>", b"<xml>" + b"x" * 40 + b"</xml>"])
def test_padding_to_16_byte_blocks_is_refused(crypto, message):
    with pytest.raises(DecryptAESError) as excinfo:
        decrypt_signed(crypto, seal(_padded_to_16_only(message)))
    assert_error(excinfo, DecryptAESError, -40007, "bad_padding")


@pytest.mark.parametrize("length", range(0, 70))
def test_every_message_we_seal_is_padded_to_32(crypto, length):
    # The fake WeCom's signer and our passive replies both seal through WeComCrypto.encrypt.
    encrypt, _ = crypto.encrypt("x" * length, NONCE, TS)
    assert len(base64.b64decode(encrypt)) % 32 == 0
    assert decrypt_signed(crypto, encrypt) == "x" * length


# The envelope parse against a reference (defusedxml's ElementTree, what it replaced): same
# envelope, or the same refusal, for any near-valid input (issue 19).


def _reference_envelope(body: bytes):
    from defusedxml import DTDForbidden

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    try:
        root = DET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        return "forbidden_dtd"
    except (DET.ParseError, ValueError):
        return "malformed_xml"
    if root.tag != "xml":
        return "bad_root"
    found = root.findall("Encrypt")
    if len(found) != 1:
        return "duplicate_encrypt" if found else "no_encrypt"
    if len(found[0]):
        return "bad_encrypt"
    encrypt = (found[0].text or "").strip()
    if not encrypt:
        return "empty_encrypt"

    def optional(tag):
        element = root.find(tag)
        return None if element is None else (element.text or "").strip()

    return Envelope(encrypt, optional("ToUserName"), optional("AgentID"))


def _ours(body: bytes):
    try:
        return parse_envelope(body)
    except ParseXmlError as exc:
        return exc.reason


envelope_pieces = st.sampled_from(
    [
        "<xml>",
        "</xml>",
        "<Encrypt>",
        "</Encrypt>",
        "<ToUserName>",
        "</ToUserName>",
        "<AgentID>",
        "</AgentID>",
        "<![CDATA[",
        "]]>",
        "QUJD",
        " ",
        "\n",
        "<b/>",
        "<!-- c -->",
        "<?pi x?>",
        "&amp;",
        "&e;",
        "<!DOCTYPE xml>",
        '<?xml version="1.0" encoding="GBK"?>',
        "<Inner>",
        "</Inner>",
        "测",
        '<xml xmlns="urn:x">',
        "<a:xml>",
        "<!DOCTYPE",
    ]
)


@settings(max_examples=400)
@given(pieces=st.lists(envelope_pieces, max_size=14))
def test_parse_envelope_agrees_with_the_defusedxml_reference(pieces):
    body = "".join(pieces).encode()
    assert _ours(body) == _reference_envelope(body)


# WeCom's own form of the envelope, and near misses of it: what _wecom_envelope (the regex) answers for must
# be what expat and the defusedxml reference answer, and everything else must still reach expat.
_valid_texts = st.sampled_from(["QUJD", "ww1436e0e65a779aee", "1000002", "a+b/c=", "x_y.z@w-1", ""])
_odd_texts = st.one_of(
    st.sampled_from([" QUJD ", "QU JD", "a&amp;b", "&e;", "]]>", "测", "\x00", "\ufffe", "<b/>"]),
    st.text(alphabet="AZaz09+/=_.@- \t\n\r\x0b\x0c&<>]测\x00\ufffe", max_size=12),
)
_valid_gaps = st.sampled_from(["", " ", "\n", "\r\n\t"])
_odd_gaps = st.sampled_from(["\x0b", "\x0c", "\u3000", "x", "<!-- c -->"])


@st.composite
def near_wecom_envelopes(draw):
    """WeCom's form with, at each choice, one chance in six of something just outside it."""

    def pick(valid, odd):
        return draw(odd if draw(st.integers(0, 5)) == 0 else valid)

    def element(tag):
        text = pick(_valid_texts, _odd_texts)
        form = draw(st.sampled_from(["cdata", "plain", "cdata", "absent"] if tag != "Encrypt" else ["cdata", "plain"]))
        if form == "absent":
            return ""
        body = f"<![CDATA[{text}]]>" if form == "cdata" else text
        return f"<{tag}>{body}</{tag}>" + pick(_valid_gaps, _odd_gaps)

    parts = [element("ToUserName"), element("Encrypt"), element("AgentID")]
    if draw(st.integers(0, 5)) == 0:
        parts = draw(st.permutations(parts))
    head = pick(st.just(""), st.sampled_from([" ", '<?xml version="1.0"?>', "\ufeff"]))
    tail = pick(_valid_gaps, _odd_gaps)
    return (head + "<xml>" + pick(_valid_gaps, _odd_gaps) + "".join(parts) + "</xml>" + tail).encode(
        "utf-8", "surrogatepass"
    )


@settings(max_examples=1000)
@given(body=near_wecom_envelopes())
def test_wecom_form_of_the_envelope_reads_as_expat_and_the_reference_do(body):
    from wecom_integration.crypto import _wecom_envelope

    fast = _wecom_envelope(body)
    reference = _reference_envelope(body)
    if fast is not None:
        assert fast == reference
    assert _ours(body) == reference


def test_the_envelope_wecom_sends_takes_the_regex_path():
    from wecom_integration.crypto import _wecom_envelope

    encrypt, _ = WeComCrypto(TOKEN, base64.b64encode(bytes(range(32))).decode()[:-1], RECEIVE_ID).encrypt(
        "x", NONCE, TS
    )
    for body in (
        f"<xml><ToUserName><![CDATA[{RECEIVE_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        "<AgentID><![CDATA[1000002]]></AgentID></xml>",
        f"<xml>\n  <ToUserName>{RECEIVE_ID}</ToUserName>\n  <Encrypt>{encrypt}</Encrypt>\n</xml>\n",
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>",
    ):
        assert _wecom_envelope(body.encode()) == _reference_envelope(body.encode())
    # One step outside the form and it is expat's to read (and refuse).
    for body in (
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><Encrypt><![CDATA[QUJD]]></Encrypt></xml>",
        f"<!DOCTYPE xml><xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>",
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>\x0c",
        "<xml><Encrypt><![CDATA[]]></Encrypt></xml>",
    ):
        assert _wecom_envelope(body.encode()) is None
        assert isinstance(_ours(body.encode()), str)


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><ToUserName>a<b/>tail</ToUserName><Encrypt>QUJD</Encrypt></xml>",
        b"<xml><ToUserName>one</ToUserName><ToUserName>two</ToUserName><Encrypt>QUJD</Encrypt></xml>",
        b"<xml><Encrypt>QU<!-- split -->JD</Encrypt><AgentID> 7 </AgentID></xml>",
        b"<xml><Encrypt><![CDATA[QU]]>JD<![CDATA[<!DOCTYPE is text here>]]></Encrypt></xml>",
        b"<xml><Encrypt>" + b"QUJD" * 5000 + b"</Encrypt></xml>",  # past expat's 8 KB text buffer
        b"\xef\xbb\xbf<xml><Encrypt>QUJD</Encrypt></xml>",
    ],
)
def test_parse_envelope_reads_texts_as_elementtree_does(body):
    assert _ours(body) == _reference_envelope(body)
    assert isinstance(_ours(body), Envelope)


@pytest.mark.parametrize(
    "body, reason",
    [
        # A DOCTYPE anywhere in the prolog, whatever it declares, stops the parse where it starts.
        (b'<?xml version="1.0"?><!DOCTYPE xml><xml><Encrypt>QUJD</Encrypt></xml>', "forbidden_dtd"),
        (b"<!-- hi --><?pi x?>\n<!DOCTYPE xml><xml><Encrypt>QUJD</Encrypt></xml>", "forbidden_dtd"),
        (
            b'<!DOCTYPE xml PUBLIC "-//X//EN" "http://127.0.0.1:9/x.dtd"><xml><Encrypt>QUJD</Encrypt></xml>',
            "forbidden_dtd",
        ),
        (
            b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><xml><Encrypt>Q</Encrypt></xml>',
            "forbidden_dtd",
        ),
        (b'<!DOCTYPE xml [<!ENTITY u SYSTEM "x" NDATA gif>]><xml><Encrypt>QUJD</Encrypt></xml>', "forbidden_dtd"),
        # After the root it is no DOCTYPE at all but a well-formedness error.
        (b"<xml><Encrypt>QUJD</Encrypt></xml><!DOCTYPE xml>", "malformed_xml"),
        (b"<xml><!DOCTYPE xml><Encrypt>QUJD</Encrypt></xml>", "malformed_xml"),
        (b'<xml><Encrypt>QUJD</Encrypt><!ENTITY e "x"></xml>', "malformed_xml"),
        (b"<xml><Encrypt>&#0;</Encrypt></xml>", "malformed_xml"),
        (b'<xml xmlns="urn:x"><Encrypt>QUJD</Encrypt></xml>', "bad_root"),
        (b'<xml xmlns:e="urn:x"><e:Encrypt>QUJD</e:Encrypt></xml>', "no_encrypt"),
        (b"<a:xml><Encrypt>QUJD</Encrypt></a:xml>", "malformed_xml"),  # unbound prefix
        ("<xml><Encrypt>QUJD\ud800</Encrypt></xml>", "malformed_xml"),  # lone surrogate in a str
    ],
)
def test_parse_envelope_refusals(body, reason):
    with pytest.raises(ParseXmlError) as excinfo:
        parse_envelope(body)
    assert_error(excinfo, ParseXmlError, -40002, reason)


def test_parse_envelope_keeps_instructions_and_comments_out():
    body = b'<?xml-stylesheet href="http://127.0.0.1:9/x.xsl"?><xml><?php x ?><Encrypt>QUJD</Encrypt></xml>'
    assert parse_envelope(body) == Envelope("QUJD", None, None)

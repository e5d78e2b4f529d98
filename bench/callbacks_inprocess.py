"""How long one contact-change callback takes in-process: verify, decrypt, parse.

Run: .venv/bin/python bench/callbacks_inprocess.py [--calls N] [--repeats R] [--parsers]

Times our path (parse_envelope + WeComCrypto.decrypt_utf8 + parse_event, as a callback runs it) against
wechatpy 1.8.18 on the same payload in the same process (``WeChatCrypto.decrypt_message`` + ``parse_message``, the
enterprise flavour), and against the straightforward way the official WXBizMsgCrypt sample does it
(hashlib, defusedxml ElementTree, a dict of the child texts). The paths take turns, one batch of
calls each per round, so a noisy neighbour slows all of them alike; the median over the rounds is
printed. wechatpy is no dependency of the project: ``.venv/bin/pip install wechatpy==1.8.18`` for
this comparison (the line is skipped without it). No Django, no network. Prints figures only;
asserts nothing. Issue 19's goal: ours <= 0.4 x wechatpy.
"""

import argparse
import base64
import hashlib
import statistics
import struct
import sys
import time
from pathlib import Path

import defusedxml.ElementTree as DET
from Crypto.Cipher import AES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wecom_integration.crypto import WeComCrypto, parse_envelope  # noqa: E402
from wecom_integration.events import parse_event  # noqa: E402

TOKEN = "QDG6eK"
ENCODING_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "ww1436e0e65a779aee"
TIMESTAMP = "1700000000"
NONCE = "1372623149"

CONTACT_CHANGE = """<xml>
<ToUserName><![CDATA[ww1436e0e65a779aee]]></ToUserName>
<FromUserName><![CDATA[sys]]></FromUserName>
<CreateTime>1700000000</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[change_contact]]></Event>
<ChangeType><![CDATA[update_user]]></ChangeType>
<UserID><![CDATA[zhangsan]]></UserID>
<NewUserID><![CDATA[zhangsan001]]></NewUserID>
<Name><![CDATA[张三]]></Name>
<Department><![CDATA[1,2,3]]></Department>
<MainDepartment>1</MainDepartment>
<IsLeaderInDept><![CDATA[1,0,0]]></IsLeaderInDept>
<Position><![CDATA[产品经理]]></Position>
<Mobile>13800000000</Mobile>
<Gender>1</Gender>
<Email><![CDATA[zhangsan@gzdev.com]]></Email>
<Status>1</Status>
<Alias><![CDATA[zhangsan]]></Alias>
<Telephone><![CDATA[020-123456]]></Telephone>
<Address><![CDATA[广州市海珠区新港中路]]></Address>
<ExtAttr><Item><Name><![CDATA[爱好]]></Name><Type>0</Type><Text><Value><![CDATA[旅游]]></Value></Text></Item></ExtAttr>
</xml>"""


def ours(crypto: WeComCrypto, msg_signature: str, body: bytes):
    # As callbacks.services.receive does it: the decrypted bytes go to the XML parser beside the text.
    envelope = parse_envelope(body)
    return parse_event(*crypto.decrypt_utf8(msg_signature, TIMESTAMP, NONCE, envelope.encrypt))


def naive_open(msg_signature: str, body: bytes) -> str:
    """The official sample's steps, written plainly, with its checks only (none on the padding)."""
    encrypt = DET.fromstring(body).find("Encrypt").text
    parts = sorted([TOKEN, TIMESTAMP, NONCE, encrypt])
    if hashlib.sha1("".join(parts).encode()).hexdigest() != msg_signature:
        raise ValueError("-40001")
    key = base64.b64decode(ENCODING_AES_KEY + "=")
    plain = AES.new(key, AES.MODE_CBC, key[:16]).decrypt(base64.b64decode(encrypt))
    content = plain[16 : -plain[-1]]
    (length,) = struct.unpack(">I", content[:4])
    if content[4 + length :].decode() != CORP_ID:
        raise ValueError("-40005")
    return content[4 : 4 + length].decode()


def naive_parse(xml: str) -> dict:
    return {child.tag: child.text for child in DET.fromstring(xml)}


def naive(msg_signature: str, body: bytes) -> dict:
    return naive_parse(naive_open(msg_signature, body))


def wechatpy_path(msg_signature: str, body: bytes):
    """wechatpy 1.8.18's enterprise callback path, or None when wechatpy is not installed."""
    try:
        from wechatpy.enterprise import parse_message
        from wechatpy.enterprise.crypto import WeChatCrypto
    except ImportError:
        return None
    crypto = WeChatCrypto(TOKEN, ENCODING_AES_KEY, CORP_ID)
    return lambda: parse_message(crypto.decrypt_message(body, msg_signature, TIMESTAMP, NONCE))


def parser_options(envelope_text: str, plaintext: str) -> dict:
    """Issue 19's candidates for the callback's XML, each on the envelope and on the plaintext.

    Each refuses a DTD (and so entities and external references): defusedxml by its handlers on the
    pure-Python parser; expat by the same refusing handlers, with the elements built in Python; the C
    ElementTree behind the ``<!DOCTYPE`` check (what parse_event used until issue 19 chose lxml); lxml with a
    hardened parser behind the same check, as written here and as :func:`parse_xml` has it (what
    parse_event uses; lxml is a dependency since).
    """
    import pyexpat
    from xml.etree.ElementTree import Element, XMLParser

    from wecom_integration.events import parse_xml

    def refuse(*_):
        raise ValueError("DTD")

    def expat_elements(text: str):
        parser = pyexpat.ParserCreate(namespace_separator="}")
        parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = refuse
        parser.UnparsedEntityDeclHandler = parser.ExternalEntityRefHandler = refuse
        parser.buffer_text = True
        stack, roots = [], []

        def start(tag, attributes):
            element = Element(tag)
            (stack[-1].append(element) if stack else roots.append(element))
            stack.append(element)

        def data(text):
            element = stack[-1]
            if len(element):
                element[-1].tail = (element[-1].tail or "") + text
            else:
                element.text = (element.text or "") + text

        parser.StartElementHandler, parser.CharacterDataHandler = start, data
        parser.EndElementHandler = lambda tag: stack.pop()
        parser.Parse(text, True)
        return roots[0]

    def c_elementtree(text: str):
        if "<!DOCTYPE" in text:
            raise ValueError("DTD")
        parser = XMLParser()
        parser.feed(text)
        return parser.close()

    options = {
        "defusedxml (pure-Python parser)": lambda text: DET.fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        ),
        "expat + refusing handlers, Python tree": expat_elements,
        "C ElementTree behind <!DOCTYPE check": c_elementtree,
    }
    try:
        from lxml import etree
    except ImportError:
        pass
    else:
        hardened = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            encoding="utf-8",
            remove_pis=True,
            remove_comments=True,
        )

        def lxml_tree(text: str):
            if "<!DOCTYPE" in text:
                raise ValueError("DTD")
            return etree.fromstring(text.encode(), parser=hardened)

        options["lxml, hardened, behind <!DOCTYPE check"] = lxml_tree
    options["parse_xml (lxml as events.py has it)"] = parse_xml
    rows = {}
    for label, parse in options.items():
        rows[f"envelope   {label}"] = lambda parse=parse: parse(envelope_text)
        rows[f"plaintext  {label}"] = lambda parse=parse: parse(plaintext)
        # What parse_event does with the tree next: every child's tag and text.
        rows[f"plaintext  {label} + walk"] = lambda parse=parse: {c.tag: c.text for c in parse(plaintext)}
    rows["envelope   parse_envelope (expat + 3 callbacks)"] = lambda: parse_envelope(envelope_text)
    return rows


def medians_us(rows: dict, calls: int, repeats: int) -> dict:
    """Per-call microseconds of each row, the median over ``repeats`` interleaved rounds."""
    per_call = {label: [] for label in rows}
    for _ in range(repeats):
        for label, fn in rows.items():
            start = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            per_call[label].append((time.perf_counter_ns() - start) / calls / 1000)
    return {label: statistics.median(values) for label, values in per_call.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls per path per round")
    parser.add_argument("--repeats", type=int, default=21, help="rounds; the median is reported")
    parser.add_argument("--parsers", action="store_true", help="also time issue 19's XML parser options")
    args = parser.parse_args()

    crypto = WeComCrypto(TOKEN, ENCODING_AES_KEY, CORP_ID)
    encrypt, msg_signature = crypto.encrypt(CONTACT_CHANGE, NONCE, TIMESTAMP)
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        "<AgentID><![CDATA[]]></AgentID></xml>"
    ).encode()

    # Every path must agree on the payload before their speed means anything.
    event = ours(crypto, msg_signature, body)
    reference = naive(msg_signature, body)
    assert event.change_type == reference["ChangeType"] == "update_user"
    assert event.user_id == reference["UserID"] == "zhangsan"
    wechatpy = wechatpy_path(msg_signature, body)
    if wechatpy is not None:
        assert wechatpy().source == "sys"

    envelope = parse_envelope(body)
    plaintext, utf8 = crypto.decrypt_utf8(msg_signature, TIMESTAMP, NONCE, envelope.encrypt)
    parts = {
        "ours  parse_envelope": lambda: parse_envelope(body),
        "ours  decrypt (verify + AES + checks)": (
            lambda: crypto.decrypt_utf8(msg_signature, TIMESTAMP, NONCE, envelope.encrypt)
        ),
        "ours  parse_event (typed event)": lambda: parse_event(plaintext, utf8),
        "naive envelope + decrypt": lambda: naive_open(msg_signature, body),
        "naive parse (dict of child texts)": lambda: naive_parse(plaintext),
    }
    totals = {
        "ours": lambda: ours(crypto, msg_signature, body),
        "naive": lambda: naive(msg_signature, body),
    }
    if wechatpy is not None:
        totals["wechatpy 1.8.18"] = wechatpy
    print(f"python {sys.version.split()[0]}; median of {args.repeats} interleaved rounds x {args.calls} calls")
    print(f"callback: change_contact/update_user; body {len(body)} bytes; plaintext {len(plaintext.encode())} bytes")
    for label, us in medians_us(parts, args.calls, args.repeats).items():
        print(f"{label:<40} {us:8.1f} us")
    if args.parsers:
        options = parser_options(body.decode(), plaintext)
        for label, us in medians_us(options, args.calls, args.repeats).items():
            print(f"{label:<58} {us:8.1f} us")
    total = medians_us(totals, args.calls, args.repeats)
    for label, us in total.items():
        print(f"{label + '  verify+decrypt+parse, total':<46} {us:8.1f} us/callback")
    if wechatpy is None:
        print("wechatpy not installed: .venv/bin/pip install wechatpy==1.8.18 for the issue-19 comparison")
    else:
        print(f"{'ratio ours/wechatpy (goal <= 0.40)':<40} {total['ours'] / total['wechatpy 1.8.18']:8.2f}x")
    print(f"{'ratio ours/naive':<40} {total['ours'] / total['naive']:8.2f}x")
    print(f"{'ours  one-core ceiling':<40} {1e6 / total['ours']:8.0f} callbacks/s")


if __name__ == "__main__":
    main()

"""How fast this machine is against the one issue 19 was filed on, read in the same run as a bench's figures.

A fixed third-party workload, wechatpy 1.8.18's verify + decrypt + parse of bench/callbacks_inprocess.py's
contact change, took 123 µs there. The same call timed here, interleaved with ours, says how to read the
issue's absolute goals (the worker's ms per event, callbacks per second, seconds of a confirm) on a slower
or faster machine. It is a reading aid printed beside the figures, never a figure itself: every bench
prints what it measured as measured. wechatpy is no dependency of the project
(``.venv/bin/pip install wechatpy==1.8.18``); without it there is no reading.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# wechatpy 1.8.18 on the in-process payload when issue 19 was filed.
WECHATPY_AT_FILING_US = 123.0


def in_process_medians_us(calls=2000, repeats=7):
    """Ours and wechatpy 1.8.18's (None when it is not installed) median µs per callback, with
    callbacks_inprocess.py's own fixtures and interleaved timer."""
    import callbacks_inprocess as inproc

    from wecom_integration.crypto import WeComCrypto

    crypto = WeComCrypto(inproc.TOKEN, inproc.ENCODING_AES_KEY, inproc.CORP_ID)
    encrypt, msg_signature = crypto.encrypt(inproc.CONTACT_CHANGE, inproc.NONCE, inproc.TIMESTAMP)
    body = f"<xml><ToUserName>{inproc.CORP_ID}</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()
    rows = {"ours": lambda: inproc.ours(crypto, msg_signature, body)}
    wechatpy = inproc.wechatpy_path(msg_signature, body)
    if wechatpy is not None:
        rows["wechatpy"] = wechatpy
    medians = inproc.medians_us(rows, calls, repeats)
    return medians["ours"], medians.get("wechatpy")


def speed(wechatpy_us):
    """This machine's speed as a fraction of issue 19's (0.5: half as fast), or None without a reading."""
    return None if not wechatpy_us else WECHATPY_AT_FILING_US / wechatpy_us


def speed_line(wechatpy_us):
    """The sentence a bench prints about the machine, from a wechatpy reading (or None)."""
    if wechatpy_us is None:
        return "wechatpy 1.8.18 not installed, so no reading of this machine's speed"
    return (
        f"wechatpy 1.8.18 {wechatpy_us:.1f} us, so this machine runs at {speed(wechatpy_us):.2f}x"
        f" the speed of issue 19's ({WECHATPY_AT_FILING_US:g} us then)"
    )

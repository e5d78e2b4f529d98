"""A member's fingerprint is encoded by msgspec (issue 19 item 5) and must stay the digest the mirror
already holds: the sha1 of ``json.dumps`` of the mirrored fields, sorted, compact, not ASCII-escaped.
Otherwise the first sync after an upgrade would rewrite every member."""

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from wecom_integration.directory.services import USER_FIELDS, fingerprint
from wecom_integration.models import WeComUser


def reference(fields):
    payload = {name: fields.get(name) for name in USER_FIELDS}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


# Any text, lone surrogates and control characters included; ints past 64 bits; what the fields hold.
text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20)
ints = st.integers(min_value=-(2**70), max_value=2**70)
fields = st.fixed_dictionaries({}, optional={
    "name": text, "departments": st.lists(ints, max_size=4), "main_department": st.none() | ints,
    "is_leader_in_dept": st.lists(st.integers(0, 1), max_size=4), "position": text, "mobile": text,
    "email": text, "avatar": text, "gender": text,
    "status": st.sampled_from(list(WeComUser.Status)) | ints,
})


@given(fields)
def test_the_fingerprint_is_the_digest_json_dumps_gives(member):
    assert fingerprint(member) == reference(member)


def test_the_fingerprint_of_a_member_with_every_escape():
    member = {"name": "引号\"反斜杠\\\b\f\n\r\t\x00\x1f\x7f\u2028😀", "departments": [1, 2**64],
              "main_department": None, "status": WeComUser.Status.ACTIVE, "position": "\ud800"}
    assert fingerprint(member) == reference(member)

"""The translation catalogues: every zh_Hans msgid translated, none fuzzy, placeholders kept, one plural form,
and the compiled .mo files say exactly what the .po files say (run `make messages` after changing a string).

Django merges every catalogue of a language into one, so the same msgid must also read the same in every
catalogue of this project; a clash needs a context (pgettext) in the code.
"""

import gettext as gnu_gettext
import re
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext, ngettext

BASE_DIR = Path(settings.BASE_DIR)
LOCALE_DIRS = {
    "wecom_integration": BASE_DIR / "wecom_integration" / "locale",
    "tenants": BASE_DIR / "tenants" / "locale",
    "project": BASE_DIR / "locale",
}
LANGUAGES = ("zh_Hans", "en")
CATALOGUES = [(name, lang) for name in LOCALE_DIRS for lang in LANGUAGES]
ZH_CATALOGUES = [(name, "zh_Hans") for name in LOCALE_DIRS]
PLACEHOLDER = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%]")
BRACE = re.compile(r"\{\w*(?:![rsa])?(?::[^{}]*)?\}")
CJK = re.compile(r"[\u4e00-\u9fff]")


def po_path(name, lang):
    return LOCALE_DIRS[name] / lang / "LC_MESSAGES" / "django.po"


def _unquote(text):
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    return re.sub(r'\\(.)', lambda m: escapes.get(m.group(1), "\\" + m.group(1)), text.strip()[1:-1])


def parse_po(path):
    """The entries of a .po file as dicts: msgctxt, msgid, msgid_plural, msgstr (list), flags, line.
    Obsolete (#~) entries are skipped; the header is the entry whose msgid is ""."""
    entries, entry, field = [], None, None

    def finish():
        if entry is not None and entry["msgid"] is not None:
            entries.append(entry)

    def new(lineno):
        return {"msgctxt": None, "msgid": None, "msgid_plural": None, "msgstr": {}, "flags": set(), "line": lineno}

    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#"):
            if entry is not None and (entry["msgstr"] or entry["msgid"] is not None):
                finish()
                entry = None
            entry = entry or new(lineno)
            if line.startswith("#,"):
                entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            continue
        match = re.match(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")$', line)
        if match:
            keyword, index, value = match.group(1), match.group(2), _unquote(match.group(3))
            if keyword in ("msgctxt", "msgid") and entry is not None and entry["msgstr"]:
                finish()
                entry = None
            entry = entry or new(lineno)
            if keyword.startswith("msgstr"):
                field = ("msgstr", int(index or 0))
                entry["msgstr"][field[1]] = value
            else:
                field = (keyword, None)
                entry[keyword] = value
            continue
        assert line.startswith('"'), f"{path}:{lineno}: cannot parse {raw!r}"
        if field[0] == "msgstr":
            entry["msgstr"][field[1]] += _unquote(line)
        else:
            entry[field[0]] += _unquote(line)
    finish()
    return entries


def messages(path):
    """The entries of a catalogue without its header."""
    return [entry for entry in parse_po(path) if entry["msgid"] != ""]


def header(path):
    entry = next(entry for entry in parse_po(path) if entry["msgid"] == "")
    return entry, dict(line.split(":", 1) for line in entry["msgstr"][0].splitlines() if ":" in line)


def describe(path, entry):
    return f"{path.relative_to(BASE_DIR)}:{entry['line']}: {entry['msgid']!r}"


@pytest.mark.parametrize("name,lang", CATALOGUES)
def test_catalogue_and_compiled_file_exist(name, lang):
    assert po_path(name, lang).is_file()
    assert po_path(name, lang).with_suffix(".mo").is_file(), "run `make messages` to compile the catalogues"


@pytest.mark.parametrize("name,lang", ZH_CATALOGUES)
def test_every_chinese_message_is_translated_and_not_fuzzy(name, lang):
    path = po_path(name, lang)
    entries = messages(path)
    assert entries, f"{path} has no messages"
    untranslated = [describe(path, e) for e in entries if not e["msgstr"] or not all(e["msgstr"].values())]
    fuzzy = [describe(path, e) for e in entries if "fuzzy" in e["flags"]]
    assert not untranslated, "untranslated:\n" + "\n".join(untranslated)
    assert not fuzzy, "fuzzy (Django ignores these; translate and drop the flag):\n" + "\n".join(fuzzy)


@pytest.mark.parametrize("name,lang", ZH_CATALOGUES)
def test_chinese_header_has_one_plural_form_and_no_fuzzy_flag(name, lang):
    path = po_path(name, lang)
    entry, fields = header(path)
    assert "fuzzy" not in entry["flags"], "a fuzzy header is dropped by msgfmt, with its charset and plural forms"
    assert fields["Plural-Forms"].replace(" ", "") == "nplurals=1;plural=0;"
    assert "charset=UTF-8" in fields["Content-Type"]
    extra = [describe(path, e) for e in messages(path) if e["msgid_plural"] is not None and set(e["msgstr"]) != {0}]
    assert not extra, "Chinese has one plural form: fill msgstr[0] only:\n" + "\n".join(extra)


@pytest.mark.parametrize("name,lang", ZH_CATALOGUES)
def test_placeholders_are_kept(name, lang):
    path = po_path(name, lang)
    problems = []
    for entry in messages(path):
        for pattern, flag in ((PLACEHOLDER, "python-format"), (BRACE, "python-brace-format")):
            if flag not in entry["flags"]:
                continue
            wanted = Counter(pattern.findall(entry["msgid"]))
            for form, text in entry["msgstr"].items():
                if text and Counter(pattern.findall(text)) != wanted:
                    problems.append(f"{describe(path, entry)} msgstr[{form}]={text!r}")
    assert not problems, "placeholders differ:\n" + "\n".join(problems)


@pytest.mark.parametrize("name,lang", CATALOGUES)
def test_compiled_catalogue_matches_the_po_file(name, lang):
    """The .mo is what `compilemessages` makes of the .po now: no message missing, changed or left over."""
    path = po_path(name, lang)
    with path.with_suffix(".mo").open("rb") as fp:
        compiled = dict(gnu_gettext.GNUTranslations(fp)._catalog)
    compiled.pop("", None)
    expected = {}
    for entry in messages(path):
        if "fuzzy" in entry["flags"] or not any(entry["msgstr"].values()):
            continue  # msgfmt leaves these out
        key = entry["msgid"] if entry["msgctxt"] is None else f"{entry['msgctxt']}\x04{entry['msgid']}"
        if entry["msgid_plural"] is None:
            expected[key] = entry["msgstr"][0]
        else:
            for form, text in entry["msgstr"].items():
                expected[(key, form)] = text
    stale = sorted(str(key) for key in expected.keys() ^ compiled.keys())
    changed = sorted(str(key) for key in expected.keys() & compiled.keys() if expected[key] != compiled[key])
    assert not stale and not changed, (
        f"{path.with_suffix('.mo').relative_to(BASE_DIR)} is out of date; run `make messages`. "
        f"Missing or left over: {stale[:10]}; changed: {changed[:10]}"
    )


def test_the_same_message_reads_the_same_in_every_catalogue():
    """Django merges all catalogues of a language into one, so a msgid can have only one translation."""
    seen, clashes = {}, []
    for name, lang in ZH_CATALOGUES:
        path = po_path(name, lang)
        for entry in messages(path):
            key = (entry["msgctxt"], entry["msgid"])
            text = entry["msgstr"].get(0)
            if key in seen and seen[key][1] != text:
                clashes.append(f"{entry['msgid']!r}: {seen[key][0]} says {seen[key][1]!r}, {name} says {text!r}")
            seen.setdefault(key, (name, text))
    assert not clashes, "\n".join(clashes)


@pytest.mark.parametrize(
    "msgid,expected",
    [
        ("Sign in with WeCom", "企业微信登录"),
        ("house number", "门牌号"),
        ("Your account is waiting for approval", "您的账号正在审核中"),
        ("Simplified Chinese", "简体中文"),
    ],
)
def test_gettext_returns_chinese(msgid, expected):
    with translation.override("zh-hans"):
        assert gettext(msgid) == expected
    with translation.override("en"):
        assert gettext(msgid) == msgid


def test_jeecgboot_wording_is_used():
    with translation.override("zh-hans"):
        assert "AppKey重复" in gettext("This CorpID is already used by another tenant (AppKey重复).")
        assert gettext(
            "WeCom is not configured yet; please configure WeCom (企业微信尚未配置,请配置企业微信)."
        ).startswith("企业微信尚未配置,请配置企业微信")
        unknown_app = gettext("Unrecognised third-party app (不识别的第三方APP): %(app)s. Use WECHAT_ENTERPRISE.")
        assert unknown_app.startswith("不识别的第三方APP")
        aes = gettext("EncodingAESKey must be exactly 43 characters.")
        assert "43" in aes and "EncodingAESKey" in aes and CJK.search(aes)


def test_plural_messages_use_the_single_chinese_form():
    with translation.override("zh-hans"):
        for count in (1, 5):
            text = ngettext("%(count)d member approved.", "%(count)d members approved.", count) % {"count": count}
            assert text == f"已审核通过 {count} 名成员。"
    with translation.override("en"):
        assert ngettext("%(count)d member approved.", "%(count)d members approved.", 5) % {"count": 5} == (
            "5 members approved."
        )

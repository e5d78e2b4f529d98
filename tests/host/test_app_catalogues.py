"""Every string an app shows is in that app's own catalogue: a host project installs the apps from the
wheel, which carries ``wecom_integration/locale`` and ``tenants/locale`` but not this repository's
``locale/``. A message used by an app's code or templates that only the project catalogue holds would
show in English to a Chinese host.

The messages an app uses are read from its sources the way ``makemessages`` reads them: Python calls of
the gettext family with literal arguments, and templates through Django's ``templatize``.
"""

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.translation.template import templatize

from tests.host.test_translations import messages, po_path

BASE_DIR = Path(settings.BASE_DIR)
APPS = ("wecom_integration", "tenants")
# name -> (position of the context, position of the msgid, position of the plural); None: absent.
GETTEXT_CALLS = {
    "_": (None, 0, None),
    "gettext": (None, 0, None),
    "gettext_lazy": (None, 0, None),
    "gettext_noop": (None, 0, None),
    "ngettext": (None, 0, 1),
    "ngettext_lazy": (None, 0, 1),
    "pgettext": (0, 1, None),
    "pgettext_lazy": (0, 1, None),
    "npgettext": (0, 1, 2),
    "npgettext_lazy": (0, 1, 2),
}
STRING = r"""u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
TEMPLATE_CALL = re.compile(rf"\b(gettext|ngettext|pgettext|npgettext)\(\s*({STRING})(?:\s*,\s*({STRING}))?")


def _call_name(node):
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def python_messages(path):
    """(context, msgid) of every gettext-family call with literal arguments in a Python file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or _call_name(node) not in GETTEXT_CALLS:
            continue
        context_at, msgid_at, _plural_at = GETTEXT_CALLS[_call_name(node)]
        args = node.args
        literal = [isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in args]
        if len(args) <= msgid_at or not literal[msgid_at] or (context_at is not None and not literal[context_at]):
            continue
        context = args[context_at].value if context_at is not None else None
        found.add((context, args[msgid_at].value))
    return found


def template_messages(path):
    """(context, msgid) of every translate / blocktranslate of a template, as makemessages sees them."""
    found = set()
    for name, first, second in TEMPLATE_CALL.findall(templatize(path.read_text(encoding="utf-8"))):
        first = ast.literal_eval(first)
        if name in ("pgettext", "npgettext"):
            found.add((first, ast.literal_eval(second)))
        else:
            found.add((None, first))
    return found


def used_messages(app):
    """{(context, msgid): first file using it} for an app's Python files and templates."""
    root = BASE_DIR / app
    used = {}
    for path in sorted(root.rglob("*.py")):
        if "migrations" not in path.parts:
            for key in python_messages(path):
                used.setdefault(key, path.relative_to(BASE_DIR))
    for path in sorted((root / "templates").rglob("*.html")):
        for key in template_messages(path):
            used.setdefault(key, path.relative_to(BASE_DIR))
    return used


def catalogue(name):
    return {(entry["msgctxt"], entry["msgid"]) for entry in messages(po_path(name, "zh_Hans"))}


def test_the_reader_finds_what_makemessages_finds():
    """The extraction above is the test's own; it must agree with the catalogues makemessages wrote."""
    for app in APPS:
        assert used_messages(app).keys() <= catalogue(app) | {(None, "")}
        assert len(used_messages(app)) > 20
    dashboard = template_messages(BASE_DIR / "tenants/templates/admin/tenants/tenant/_dashboard.html")
    assert (None, "Last sync") in dashboard
    assert (None, "%(counter)s failed callback") in dashboard


@pytest.mark.parametrize("app", APPS)
def test_every_message_an_app_uses_is_in_its_own_catalogue(app):
    own, project = catalogue(app), catalogue("project")
    missing = {key: where for key, where in used_messages(app).items() if key not in own and key[1]}
    only_in_project = [f"{where}: {msgid!r}" for (_ctx, msgid), where in missing.items() if (_ctx, msgid) in project]
    assert not only_in_project, (
        f"used by {app} but only in the project's locale/ (the wheel does not carry it); keep the template in "
        f"the app and run `make messages`:\n" + "\n".join(sorted(only_in_project))
    )
    assert not missing, f"used by {app} but in no catalogue of {app}; run `make messages`:\n" + "\n".join(
        f"{where}: {msgid!r}" for (_ctx, msgid), where in sorted(missing.items(), key=str)
    )


def test_the_project_catalogue_holds_only_the_projects_own_strings():
    """Its references name this repository's project files (config/, templates/), never an app's."""
    path = po_path("project", "zh_Hans")
    references = re.findall(r"^#: (.+)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    files = {ref.rsplit(":", 1)[0] for line in references for ref in line.split()}
    assert files, path
    in_apps = sorted(file for file in files if file.split("/")[0] in APPS)
    assert not in_apps, in_apps
    assert len(messages(path)) <= 10, "the project catalogue is for the project's branding and settings only"

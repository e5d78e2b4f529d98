# make demo: the main job on the embedded default (SQLite, eager Celery, a fake WeCom on loopback), DEBUG off,
#   static files collected into STATIC_ROOT and served by WhiteNoise as in production.
# make test: ruff, migrations check, the import contracts of docs/architecture.md (lint-imports) and the whole
#   suite (SQLite by default; .ci/run adds PostgreSQL + Redis).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install lint messages screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[server,test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	WECOM_API_BASE=http://127.0.0.1:8890 WECOM_JSSDK_SCRIPTS=http://127.0.0.1:8890/fake/jssdk/standin.js \
	  $(PY) manage.py wecom_demo --fake-port 8890 --addr 127.0.0.1:8000

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pytest -q

messages: $(STAMP)
	$(PY) manage.py makemessages -l zh_Hans -l en --no-obsolete --ignore=.venv --ignore=bench --ignore=tests
	$(PY) manage.py compilemessages --ignore=.venv

screenshots: $(STAMP)
	WECOM_SCREENSHOTS_DIR=docs/screenshots $(VENV)/bin/pytest -q tests/e2e

clean:
	rm -rf $(VENV) db/*.sqlite3*

# Two commands matter: `make demo` and `make test`. Both set up from nothing and skip
# what is already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
SANDBOX_PORT ?= 8001
DEMO_ENV := DJANGO_DEBUG=true THENA_API_BASE_URL=http://127.0.0.1:$(SANDBOX_PORT) \
	THENA_API_KEY=sandbox-demo-key THENA_WEBHOOK_SECRET=demo-webhook-secret-not-for-production
PG_BIN := /usr/lib/postgresql/15/bin

.PHONY: demo demo-sso test test-postgres setup browser lint format lock bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 12), "Python 3.12+ is needed (see .python-version)"'
	$(PYTHON) -m venv $(VENV)

# Development and tests: the production lock plus the dev tools (requirements-dev.lock).
# A production install takes requirements.lock alone.
$(VENV)/.installed: requirements-dev.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@

setup: $(VENV)/.installed

# The demo runs three processes: the sandbox over HTTP (so that the web server and the
# task worker see the same tickets; it sends its ticket events to the web server), the
# worker (it settles lost edits and processes the events) and the web server. Ctrl-C
# stops all three.
demo: setup
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo
	$(DEMO_ENV) $(BIN)/python manage.py schedule_reconcile
	@{ $(DEMO_ENV) $(BIN)/python manage.py thena_sandbox --port $(SANDBOX_PORT) \
	    --events-url http://127.0.0.1:$(PORT)/webhooks/thena/ >/dev/null & sandbox=$$!; \
	  $(DEMO_ENV) $(BIN)/python manage.py db_worker --no-reload & worker=$$!; \
	  trap 'kill $$worker $$sandbox 2>/dev/null; wait' EXIT; \
	  $(DEMO_ENV) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT); }

# The demo with single sign-on (README "Single sign-on"): the test suite's OpenID Connect
# provider (tests/oidc_provider) on IDP_PORT, whose people are in
# tests/oidc_provider/demo_people.json (password "demo"), and the demo pointed at it.
# `make demo` alone has no provider and needs none.
IDP_PORT ?= 8002
IDP_CLIENT := --client-id thena-admin-demo --client-secret demo-client-secret
SSO_DEMO_ENV := OIDC_ISSUER=http://127.0.0.1:$(IDP_PORT)/o OIDC_CLIENT_ID=thena-admin-demo \
	OIDC_CLIENT_SECRET=demo-client-secret OIDC_PROVIDER_NAME='Demo IdP' \
	OIDC_GROUP_MAP='support-leads=Support managers,audit=Auditors' \
	OIDC_TEAM_SCOPE_CLAIM=thena_teams

demo-sso: setup
	@{ $(BIN)/python -m tests.oidc_provider --port $(IDP_PORT) $(IDP_CLIENT) \
	    --people tests/oidc_provider/demo_people.json \
	    $(foreach host,127.0.0.1 localhost,--redirect-uri http://$(host):$(PORT)/accounts/oidc/callback/ \
	      --post-logout-redirect-uri http://$(host):$(PORT)/accounts/login/) & idp=$$!; \
	  trap 'kill $$idp 2>/dev/null; wait' EXIT; \
	  $(MAKE) --no-print-directory demo DEMO_ENV="$(DEMO_ENV) $(SSO_DEMO_ENV)"; }

# Browser tests drive Debian's Chromium; in CI a missing browser is installed, and a
# browser that still cannot be had fails the run (tests/e2e/conftest.py).
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$${CI:-}" = "true" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

test: setup browser
	$(BIN)/python -m pytest

# The database tests against a throwaway PostgreSQL 15 cluster (started and removed here).
test-postgres: setup
	@dir=$$(mktemp -d /tmp/thena-pg.XXXXXX); chown postgres "$$dir" 2>/dev/null; \
	run() { if [ "$$(id -u)" = 0 ]; then runuser -u postgres -- "$$@"; else "$$@"; fi; }; \
	run $(PG_BIN)/initdb -D "$$dir/data" -A trust -U postgres >/dev/null && \
	run $(PG_BIN)/pg_ctl -D "$$dir/data" -o "-c listen_addresses=127.0.0.1 -p 5433 -k $$dir" -w -l "$$dir/log" start >/dev/null && \
	DATABASE_URL=postgres://postgres@127.0.0.1:5433/postgres $(BIN)/python -m pytest --ignore=tests/e2e; \
	status=$$?; run $(PG_BIN)/pg_ctl -D "$$dir/data" -m fast stop >/dev/null; rm -rf "$$dir"; exit $$status

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin both locks after changing pyproject.toml.
UV_VERSION := 0.13.9
lock: setup
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml --python-version 3.12 --generate-hashes -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --group dev --python-version 3.12 --generate-hashes -o requirements-dev.lock

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache

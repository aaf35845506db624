# Two commands: `make run` serves the demo, `make test` runs everything.
VENV ?= .venv
PYTHON ?= python3
PORT ?= 5000
LIVE_PORT ?= 5001
BASE_URL ?= http://127.0.0.1:$(PORT)
FLASK = TIDINGS_ENV=development BASE_URL=$(BASE_URL) $(VENV)/bin/flask --app wsgi

.PHONY: run test lint format install install-dev bench bench-mail clean translations catalogues

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

# The interface's catalogues: each .po compiled to the .mo that Flask-Babel reads.
CATALOGUES := $(wildcard translations/*/LC_MESSAGES/messages.po)
translations: $(CATALOGUES:.po=.mo)
translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po $(VENV)/.installed
	$(VENV)/bin/pybabel compile --statistics -i $< -o $@ -l $*

# After changing the interface's wording: extract it again and merge it into every .po.
catalogues: $(VENV)/.installed
	$(VENV)/bin/pybabel extract --no-wrap --sort-by-file -F babel.cfg -k lazy_gettext -k N_ \
	  -o translations/messages.pot app announcements templates
	$(VENV)/bin/pybabel update --no-wrap -i translations/messages.pot -d translations

install: $(VENV)/.installed translations
install-dev: $(VENV)/.installed-dev translations

run: install
	$(FLASK) db upgrade
	$(FLASK) demo
	@echo "  Serving on http://127.0.0.1:$(PORT)/console/ (Ctrl-C stops)"
	@echo "  The worker sends mail$$( [ -n "$$SMTP_URL" ] || echo ' as .eml files into instance/mail/')"
	@echo "  Open widgets hear of changes from the live process on port $(LIVE_PORT)"
	$(FLASK) worker --threads 1 & worker=$$!; \
	  $(FLASK) live --port $(LIVE_PORT) & live=$$!; \
	  trap 'kill $$worker $$live 2>/dev/null' EXIT INT TERM; \
	  LIVE_URL=http://127.0.0.1:$(LIVE_PORT) $(FLASK) run --host 127.0.0.1 --port $(PORT)

test: install-dev
	scripts/test.sh

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: install-dev
	scripts/bench.sh $(ARGS)

bench-mail: install-dev
	PG_DURABLE=1 scripts/with-postgres.sh $(VENV)/bin/python bench/mail_bench.py $(ARGS)

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache

# Two commands: `make run` starts the whole hub, `make test` runs every check.
# Both set up .venv first (once, and again whenever a pyproject or the lock changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := libs/common services/registry services/fetcher services/invitations services/gateway sandbox cli
PROJECT_FILES := $(foreach package,$(PACKAGES),$(package)/pyproject.toml)

.PHONY: run test fuzz lint typecheck unit setup clean asyncapi deploy-schema deploy-check nats-permissions messages messages-extract messages-update messages-init messages-check

$(STAMP): constraints.txt requirements-dev.txt $(PROJECT_FILES)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt $(foreach package,$(PACKAGES),-e $(package))
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	exec $(BIN)/hub up

# The tests spend most of their time waiting on real servers (a core or less busy out of
# two), so two workers take the run from about 14.5 to 7.5 minutes. A file runs whole on one
# worker (its module's servers start once), and the files go out in their folders' order,
# so a package's servers (the e2e hub, the fault hub, the cluster) start once per worker,
# not again each time a worker comes back to the package. `make test TEST_WORKERS=0` runs
# everything in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# `make test` fuzzes the API with a bounded, deterministic run; this one digs deeper.
fuzz: $(STAMP)
	HUB_FUZZ_EXAMPLES=$${HUB_FUZZ_EXAMPLES:-300} $(BIN)/pytest tests/e2e/test_openapi_fuzz.py

asyncapi: $(STAMP)
	$(BIN)/hub asyncapi --output docs/asyncapi.json

# The JSON Schema of each service's settings in a Kubernetes installation (from the models).
deploy-schema: $(STAMP)
	$(BIN)/hub deploy-schema --output deploy/kubernetes/settings.schema.json

# The NATS users and their permissions (hub_common.nats_permissions), for the three-node
# configuration and the NATS chart's values.
nats-permissions: $(STAMP)
	$(BIN)/hub nats-permissions > deploy/nats/authorization.conf
	$(BIN)/hub nats-permissions --chart-values deploy/kubernetes/nats/values.yaml

# Render and check both example overlays (needs kubectl; no cluster).
deploy-check: $(STAMP)
	$(BIN)/hub deploy-check deploy/kubernetes/overlays/production
	$(BIN)/hub deploy-check deploy/kubernetes/overlays/staging

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The message catalogue (libs/common/hub_common/translations, see README "Languages").
# Extract every marked message of the Python code, the templates and the scripts into
# messages.pot, then merge it into each language's .po (new messages arrive untranslated, and
# messages-check fails until they are translated). The .po files are read at start: no .mo.
TRANSLATIONS := libs/common/hub_common/translations
LANGUAGES := en nl de fr

messages: messages-extract messages-update

messages-extract: $(STAMP)
	$(BIN)/pybabel extract --mapping-file babel.cfg --sort-by-file --no-wrap --project "Accountant Hub" \
		--msgid-bugs-address "" --copyright-holder "" --omit-header --output-file $(TRANSLATIONS)/messages.pot .

messages-update: $(STAMP)
	for language in $(LANGUAGES); do \
		$(BIN)/pybabel update --input-file $(TRANSLATIONS)/messages.pot --output-dir $(TRANSLATIONS) \
			--locale $$language --no-wrap --no-fuzzy-matching --ignore-obsolete || exit 1; \
	done

# A new language: `make messages-init LANGUAGE=es`, then add it to LANGUAGES here and in hub_common/i18n.py.
messages-init: $(STAMP)
	$(BIN)/pybabel init --input-file $(TRANSLATIONS)/messages.pot --output-dir $(TRANSLATIONS) --locale $(LANGUAGE) --no-wrap

# Every message of the code is in every .po, translated, with the same placeholders; and each
# .po compiles (in memory, as the services do at start).
messages-check: $(STAMP)
	$(BIN)/pytest tests/unit/test_message_catalogue.py -q

# Everything runs from .venv, created from the project's own files on first use
# and refreshed when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev bench chaos lock histories clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,test]"
	touch $(STAMP)

## demo: run one round end to end on the embedded dev stack, then stop
demo: $(STAMP)
	$(BIN)/amend demo

## dev: run the embedded dev stack until Ctrl-C
dev: $(STAMP)
	$(BIN)/amend dev

## test: the whole suite against real Temporal and PostgreSQL
test: $(STAMP)
	$(BIN)/pytest

## bench: every benchmark in bench/ on the embedded stack -> bench/RESULTS.md, bench/results.json
bench: $(STAMP)
	$(BIN)/python -m bench

## chaos: the fault suite (stack as separate processes, faults injected, invariants
## checked) -> bench/CHAOS.md; exits 1 when an invariant fails. Flags: CHAOS_FLAGS="--quick"
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_FLAGS)

## lint: ruff and mypy; deploy/ checked statically with the field's own linters
## (no Docker engine needed): hadolint, kubernetes-validate, the compose schema, yamllint
K8S_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet $(K8S_MANIFESTS)
	$(BIN)/check-jsonschema --schemafile deploy/schemas/compose-spec.json deploy/compose.yaml
	$(BIN)/yamllint --strict .

## histories: record the round workflow's histories that `make test` replays (tests/histories/)
histories: $(STAMP)
	$(BIN)/python -m tests.histories.record

## lock: pin the runtime dependencies, with hashes, for the image (deploy/requirements.lock)
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --quiet --generate-hashes --universal \
		--python-version 3.11 --custom-compile-command "make lock" -o deploy/requirements.lock

clean:
	rm -rf $(VENV) .amend .pytest_cache .mypy_cache .ruff_cache

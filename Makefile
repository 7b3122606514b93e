# Everyday entry points; each installs the locked dependencies first.
# Needs Python 3.11 and uv; the local stack and the tests also need Java 17+
# and Maven (the Kafka broker jars are fetched from Maven Central once).

UV ?= uv

.PHONY: sync up test lint bench

sync:
	$(UV) sync --frozen

up: sync
	$(UV) run guestlist up

# pytest exits 5 when it ran no test: that is a failure here, not a pass.
test: sync
	@$(UV) run pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest ran no test" >&2; exit 1; fi; \
	exit $$status

lint: sync
	$(UV) run ruff check .
	$(UV) run mypy packages services schemas
	$(UV) run python -m schemas.generate --check

bench: sync
	$(UV) run python -m bench

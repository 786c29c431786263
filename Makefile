# The two promises: `make demo` runs the harness against PyBullet, `make test` runs the tests.
# Each sets up what it needs (scripts/setup.sh is idempotent and quick when nothing changed).
.PHONY: setup demo test bench bench-foundation bench-router bench-memory bench-perception bench-world-model bench-latent-action bench-episodes clean

RUN := scripts/env.sh

setup:
	@bash scripts/setup.sh

demo: setup
	@$(RUN) python -m harness_nodes.demo

test: setup
	@$(RUN) python -m pytest -q

# The benchmark suite: scenarios x ablations x seeds; results/suite-<time>/ (table, plots, JSON)
bench: setup
	@$(RUN) python bench/suite.py $(BENCH_ARGS)

bench-foundation: setup
	@$(RUN) python bench/foundation.py

clean:
	rm -rf build .venv

bench-router: setup
	@$(RUN) python bench/router.py

bench-memory: setup
	@$(RUN) python bench/memory.py

bench-perception: setup
	@$(RUN) python bench/perception.py

bench-world-model: setup
	@$(RUN) python bench/world_model.py

bench-latent-action: setup
	@$(RUN) python bench/latent_action.py

bench-episodes: setup
	@$(RUN) python bench/episodes.py

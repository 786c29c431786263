"""Benchmark suite (issue #13): scenarios x ablations x seeds of harness episodes, locally in
parallel worker processes or on Ray (`--ray [ADDRESS]`); writes results/<dir>/table.md, PNG plots
and results.json, prints the table and, last, one JSON line. `make bench` runs the default suite;
`--smoke` a small one. Everything is in harness_nodes/benchmark/suite.py."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness_nodes.benchmark.suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

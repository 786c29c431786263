"""`python -m harness_nodes.supervisor.operator`: see the package docstring."""
import sys

from harness_nodes.supervisor.operator.node import main

sys.exit(main())

"""Make the benchmark references importable from the tests (they live in benchmarks/)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.references import numpy_plain, numpy_strong

__all__ = ["numpy_plain", "numpy_strong"]

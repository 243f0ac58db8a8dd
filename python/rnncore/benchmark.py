"""rnncore.benchmark is rnncore.apps.benchmark (the harness behind `rnncore bench` and
bench/compare.py), under its earlier name; `python -m rnncore.benchmark` runs it."""

import sys

from .apps import benchmark as _app

if __name__ == "__main__":
    sys.exit(_app.main())
sys.modules[__name__] = _app  # one module object, so that both names see the same functions

"""rnncore.demo is rnncore.apps.demo (the `rnncore demo` command), under its earlier name."""

import sys

from .apps import demo as _app

sys.modules[__name__] = _app  # one module object, so that both names see the same functions

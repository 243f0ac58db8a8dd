"""rnncore.charlm is rnncore.apps.charlm (the `rnncore charlm` command), under its earlier name."""

import sys

from .apps import charlm as _app

sys.modules[__name__] = _app  # one module object, so that both names see the same functions

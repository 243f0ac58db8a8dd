"""rnncore.gradflow is rnncore.apps.gradflow (the `rnncore gradflow` command), under its earlier name."""

import sys

from .apps import gradflow as _app

sys.modules[__name__] = _app  # one module object, so that both names see the same functions

"""rnncore.grads is rnncore.nn.grads (the training toolkit), under its earlier name."""

import sys

from .nn import grads as _toolkit

sys.modules[__name__] = _toolkit  # one module object, so that both names see the same classes

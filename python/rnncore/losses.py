"""rnncore.losses is rnncore.nn.losses (the training toolkit), under its earlier name."""

import sys

from .nn import losses as _toolkit

sys.modules[__name__] = _toolkit  # one module object, so that both names see the same classes

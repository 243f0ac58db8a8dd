"""rnncore.nn: the training toolkit around the recurrent layers, in NumPy.

    rnncore.nn.modules  Linear, Embedding, Attention; parameter counts of the recurrent layers
    rnncore.nn.losses   softmax cross-entropy, MSE and their gradients; softmax, log_softmax, one_hot
    rnncore.nn.optim    SGD, Adam, AdamW (in place on a model's live parameter dicts)
    rnncore.nn.grads    global norm, clipping, per-step gradient norms

Every name is also importable from rnncore.nn itself and from rnncore (and rnncore.losses,
rnncore.optim, rnncore.grads remain as aliases of the submodules). The toolkit sits above the
library (rnncore.layers, the backends) and below the applications (rnncore.apps).
"""

from __future__ import annotations

from . import grads, losses, modules, optim
from .grads import *  # noqa: F401,F403 - the toolkit's names, re-exported
from .losses import *  # noqa: F401,F403
from .modules import *  # noqa: F401,F403
from .modules import ATTENTION_SCORES  # noqa: F401 - the Attention layer's score names
from .optim import *  # noqa: F401,F403

__all__ = [*modules.__all__, *losses.__all__, *optim.__all__, *grads.__all__]

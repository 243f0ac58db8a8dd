"""rnncore: fast CPU recurrent networks (RNN, LSTM, GRU) with forward and BPTT in C++.

    import numpy as np, rnncore as rc
    m = rc.LSTM(8, 32, num_layers=2)
    y, (h_n, c_n) = m(np.zeros((100, 4, 8), np.float32))
"""

from __future__ import annotations

from . import reference
from ._core import get_num_threads, set_num_threads
from .layers import GRU, LSTM, RNN, ForwardCache, Gradients

__version__ = "0.1.0"

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "Gradients",
    "ForwardCache",
    "reference",
    "get_num_threads",
    "set_num_threads",
    "build_info",
    "__version__",
]


def build_info() -> dict:
    """How the compiled core was built: compiler, SIMD level, Eigen version, OpenMP, CUDA."""
    from ._core import build_info as _info

    info = dict(_info())
    info["version"] = __version__
    return info

"""rnncore: fast CPU recurrent networks (RNN, LSTM, GRU) with forward and BPTT in C++.

    import numpy as np, rnncore as rc
    m = rc.LSTM(8, 32, num_layers=2)
    y, (h_n, c_n) = m(np.zeros((100, 4, 8), np.float32))
"""

from __future__ import annotations

from . import reference
from ._core import cache_info, empty_cache, get_num_threads, set_num_threads
from .floating_point import get_flush_denormals, set_flush_denormals
from .nn.grads import clip_grad_norm, global_norm, per_step_grad_norms
from .io import ModelFileError
from .layers import GRU, LSTM, RNN, ForwardCache, Gradients, PreparedModel, load
from .streaming import Stream
from .threads import get_thread_plan, reset_thread_plan, set_thread_plan, thread_plan_report
from .nn.losses import log_softmax, mse, one_hot, softmax, softmax_cross_entropy
from .nn import Attention, Embedding, Linear, ParameterRow, parameter_count, parameter_table
from .nn.optim import SGD, Adam, AdamW

__version__ = "0.1.0"

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "Gradients",
    "ForwardCache",
    "PreparedModel",
    "Stream",
    "load",
    "save",
    "ModelFileError",
    "Linear",
    "Embedding",
    "Attention",
    "parameter_count",
    "parameter_table",
    "ParameterRow",
    "softmax_cross_entropy",
    "mse",
    "one_hot",
    "softmax",
    "log_softmax",
    "SGD",
    "Adam",
    "AdamW",
    "clip_grad_norm",
    "global_norm",
    "per_step_grad_norms",
    "reference",
    "get_num_threads",
    "set_num_threads",
    "set_thread_plan",
    "get_thread_plan",
    "thread_plan_report",
    "reset_thread_plan",
    "set_flush_denormals",
    "get_flush_denormals",
    "empty_cache",
    "cache_info",
    "build_info",
    "__version__",
]


def save(model, path) -> None:
    """Write a model to a safetensors file: the same as model.save(path)."""
    model.save(path)


def build_info() -> dict:
    """How the compiled core was built: compiler, the kernels' instruction set ("isa" in words,
    "arch", "isa_features"), "vector_bytes" (one SIMD register), "panel_floats" (floats per
    packed weight panel), Eigen version, OpenMP; "cuda" (whether the CUDA kernels were built,
    RNNCORE_CUDA), "cuda_version" (the toolkit they were built with, "" without) and
    "cuda_device" (the device found, or "none (why)"); and the version."""
    from ._core import build_info as _info
    from ._isa import describe

    info = dict(_info())
    info["isa"] = describe(info["arch"], info["isa_features"])
    info["version"] = __version__
    return info

"""The backend interface: the layers (rnncore.layers), PreparedModel, Stream and rnncore.torch
run a model through one backend object, so that a new set of kernels plugs in here and touches
no layer code. Registered: "cpp" (the compiled CPU kernels, rnncore._core) and "numpy"
(rnncore.reference, the oracle).

The contract, for every backend (the names are positional-or-keyword as written):

    backend.name                                         the name users pass as backend=
    backend.forward(config, params, x, h0, c0, lengths, *, training, dropout_masks=None)
        -> (y, h_n, c_n, cache)                          cache is None when training is False
    backend.backward(cache, params, grad_y, grad_h_n, grad_c_n, *, need_grad_input=True,
                     need_weight_grads=None)
        -> (grad_x, grad_h0, grad_c0, grads)
    backend.prepare(config, params) -> prepared          prepared(x, h0, c0, lengths) -> (y, h_n, c_n)
                                                         and prepared.nbytes
    backend.stream(config, params, batch_size, threads) -> a stream over a unidirectional
        model (rnncore.streaming's step, step_many, get_state, set_state, reset, reset_rows);
        a backend without streaming raises ValueError naming itself.

Arguments, as the caller hands them over (the layers check every user value once, before the
call: a backend does not check them again, except what guards its own memory, as rnncore._core
does):
    config    rnncore._core.ModelConfig, built once per model: cell ("rnn_tanh", "rnn_relu",
              "lstm", "gru"), input_size I, hidden_size H, num_layers L, bidirectional (D = 2
              or 1), bias, and gates G.
    params    {name: array} with the names, shapes and order of rnncore._spec.param_names /
              param_shapes, C-contiguous, float32 or float64 (the model's dtype). The model's live
              arrays: a backend reads them and never writes them; forward must not keep them
              past its return except through the cache, which backward reads with the same
              params (the caller refuses a cache whose params were reloaded since).
    x         (T, N, I), time-major, C-contiguous, the params' dtype, T >= 1, N >= 1.
    h0, c0    (D*L, N, H) or None (zeros); c0 is None for every cell but the LSTM.
    lengths   int64 (N,) with values in 1..T in any order, or None (every sequence runs T steps).
    grad_y    (T, N, D*H) or None (zeros); grad_h_n, grad_c_n like h0, c0, or None (zeros).
    dropout_masks  (L-1, T, N, D*H) or None: the output of every layer below the top is
              multiplied by its mask (0 or 1/(1-p): dropout between layers) before the next layer
              reads it, and its gradient by the same mask in backward (the cache keeps it).
    need_grad_input  False: grad_x is not wanted (None is returned; a backend may skip it).
    need_weight_grads  None (all) or {name: bool}: grads[name] is None where False (a backend
              may skip those products).
Results are new arrays in the params' dtype: y (T, N, D*H), zero at t >= lengths[b]; h_n and c_n
(D*L, N, H), c_n None for every cell but the LSTM; grad_x like x, grad_h0 and grad_c0 like h_n,
c_n; grads {name: array} with params' names and shapes. The cache is opaque to the caller, holds
the config it was made with (backward takes it from there: the config is never sent twice) and
may release the GIL while the kernels run. Options added later (e.g. dropout) come as keyword
arguments with defaults that keep these calls meaning what they mean now.

tests/test_backends.py runs every registered backend through this contract and against the
reference; a backend registered when rnncore.backends is imported is picked up there.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["Backend", "Prepared", "get", "names", "register"]


class Prepared(Protocol):
    """A model's weights made ready once for repeated inference calls (see the module doc)."""

    nbytes: int

    def __call__(self, x: Any, h0: Any, c0: Any, lengths: Any) -> tuple[Any, Any, Any]: ...


class Backend(Protocol):
    """One set of kernels behind the layers (see the module doc for the contract)."""

    name: str

    def forward(self, config: Any, params: dict, x: Any, h0: Any, c0: Any, lengths: Any, *,
                training: bool, dropout_masks: Any = None) -> tuple[Any, Any, Any, Any]: ...

    def backward(self, cache: Any, params: dict, grad_y: Any, grad_h_n: Any, grad_c_n: Any, *,
                 need_grad_input: bool = True,
                 need_weight_grads: Any = None) -> tuple[Any, Any, Any, dict]: ...

    def prepare(self, config: Any, params: dict) -> Prepared: ...

    def stream(self, config: Any, params: dict, batch_size: int, threads: int) -> Any: ...


_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    """Make `backend` available as backend=backend.name (a later one of the same name replaces it)."""
    _REGISTRY[backend.name] = backend
    return backend


def names() -> tuple[str, ...]:
    """The registered backends' names, in registration order."""
    return tuple(_REGISTRY)


def get(name: Any, argument: str = "backend") -> Backend:
    """The backend called `name`; a ValueError naming `argument` for any other value."""
    backend = _REGISTRY.get(name) if isinstance(name, str) else None
    if backend is None:
        raise ValueError(f"{argument}: expected one of {names()}, got {name!r}")
    return backend


def _register_builtin() -> None:
    from . import cpp, reference

    register(cpp.CppBackend())
    register(reference.ReferenceBackend())


_register_builtin()

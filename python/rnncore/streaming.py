"""Frame-by-frame inference with the state carried between calls: `model.stream(batch_size)`.

    s = lstm.stream(batch_size=1)
    for frame in frames:            # frame: (I,) for one stream, or (N, I)
        y = s.step(frame)           # the top layer's new h: (H,) or (N, H)

A stream runs the compiled C++ Stream (rnncore/stream.h): the weights are packed once, when the
stream is made, so each step is one fused matrix-vector product per layer plus the cell's
pointwise math. It holds its own packed copy of the weights: after changing the model's
parameters, make a new stream.

Each batch row is an independent stream: `reset(rows)` restarts some rows while the others go on,
and a row's outputs do not depend on the batch size or on the other rows (bit for bit).
Stepping frame by frame gives the whole-sequence call's outputs to within float rounding (the
products are summed in another order: ≤ 1e-6 in float32 for models with bounded outputs, ~1e-15
in float64); `step_many(chunk)` gives exactly what `step` frame by frame gives.

Threads: a stream serves one caller at a time. A call (step, step_many, reset, state, setting
state) made while another thread is inside a call on the same stream raises RuntimeError ("rnncore
Stream is being used by another thread; ...") and changes nothing; calls are never queued, since
two threads feeding one state would interleave their frames. Give each thread its own stream
(streams share nothing and run concurrently, with the same results bit for bit), or hold a lock
around every call. step_many always releases the GIL, step does for large models (the work of
a step over ~2e5 multiply-adds), so the other threads run meanwhile.

Sizes: batch_size above 2**63 - 1, or one whose arrays would not fit in 64 bits, raises
ValueError naming it; a stream needing more bytes than this machine's memory raises MemoryError
before anything is allocated (rnncore._limits).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import _checks, _limits, backends
from .backends.cpp import stream_type

__all__ = ["Stream"]


class Stream:
    """A stateful, batched stream over a unidirectional RNN, LSTM or GRU (see the module doc).

    One caller at a time: a call that overlaps another thread's call on the same stream raises
    RuntimeError and changes nothing. Use one stream per thread, or a lock.

    state: the model's hx layout with every layer, always batched: h of shape
    (num_layers, batch_size, hidden_size), or for the LSTM a tuple (h, c) of two such arrays.
    Setting it also takes (num_layers, hidden_size) when batch_size is 1.
    """

    # `step` is an attribute of each stream, not a method of the class: the C++ binding's step
    # function for this stream (rnncore/_core: StreamF32.fast_step), so that a step from Python
    # runs no Python frame when the frame needs nothing done (a Python method around it cost
    # 60-100 ns, as much as a 16-unit layer's step); every other call goes to its fallback,
    # _general_step_of's function, which holds the binding's general step and the dtype, not the
    # stream (so no cycle, and `model.stream(1).step(x)` works after the stream itself is gone).
    __slots__ = {
        "step": "step(x_t, out=None): one frame in, the top layer's new h out (help(stream.step) "
                "on a stream tells the shapes and what `out` saves).",
        "_impl": None, "_model": None, "_dtype": None, "_batch_size": None, "_lstm": None,
    }
    step: Callable[..., np.ndarray]  # (x_t, out=None), see the slot's docstring above

    def __init__(self, model: Any, batch_size: int = 1, threads: int = 1) -> None:
        batch_size = _limits.size("batch_size", batch_size)
        threads = _limits.size("threads", threads, _limits.MAX_THREADS)
        if model.bidirectional:
            raise ValueError(
                f"stream: {model!r} is bidirectional; its reverse direction needs the whole sequence, "
                "so it cannot run frame by frame (call the model on whole sequences instead)"
            )
        self._model = model
        self._dtype = model.dtype
        self._batch_size = batch_size
        self._lstm = model.cell == "lstm"
        config = model.config
        sizes = (config.cell_code, config.input_size, config.hidden_size, config.num_layers)
        _limits.check_memory(f"stream(batch_size={batch_size}) of {model!r}",
                             stream_type(self._dtype).bytes_needed(*sizes, batch_size))
        self._impl = backends.get("cpp").stream(config, model.parameters(), batch_size, threads)
        self.step = self._impl.fast_step(_general_step_of(self._impl.step, self._dtype))

    # ------------------------------------------------------------------ properties
    @property
    def model(self) -> Any:
        """The model this stream was made from (its weights as they were then)."""
        return self._model

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def threads(self) -> int:
        """Threads each step runs on (see Model.stream)."""
        return int(self._impl.threads)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def __repr__(self) -> str:
        return f"<Stream batch_size={self._batch_size} of {self._model!r}>"

    # ------------------------------------------------------------------ stepping
    def step_many(self, chunk: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Several frames in one call: chunk (T, batch_size, input_size), or (T, input_size) when
        batch_size is 1; always time-major (batch_first does not apply). Returns (T, batch_size,
        hidden_size) (or (T, hidden_size)), exactly what T calls of step() return."""
        if type(chunk) is not np.ndarray or chunk.dtype is not self._dtype:
            chunk = _checks.real_array("chunk", chunk, self._dtype)
        return self._impl.step_many(chunk, out)

    # ------------------------------------------------------------------ state
    def _state_shape(self) -> tuple[int, int, int]:
        return (self._model.num_layers, self._batch_size, self._model.hidden_size)

    @property
    def state(self) -> Any:
        """A copy of the state: h (num_layers, batch_size, hidden_size), LSTM (h, c)."""
        h, c = self._impl.get_state()
        return (h, c) if self._lstm else h

    @state.setter
    def state(self, value: Any) -> None:
        if self._lstm:
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise TypeError(f"state: an LSTM stream takes a tuple (h, c), got {_checks.describe(value)}")
            h = self._canonical_state("state[0] (h)", value[0])
            c = self._canonical_state("state[1] (c)", value[1])
        else:
            if isinstance(value, (tuple, list)):
                raise TypeError(f"state: a {type(self._model).__name__} stream takes one array h, "
                                f"got {_checks.describe(value)}")
            h, c = self._canonical_state("state", value), None
        self._impl.set_state(h, c)  # both are checked before either is set

    def _canonical_state(self, name: str, value: Any) -> np.ndarray:
        array = _checks.real_array(name, value, self._dtype)
        shape = self._state_shape()
        if self._batch_size == 1 and array.shape == (shape[0], shape[2]):
            array = array[:, None, :]
        _checks.exact_shape(name, array, shape, "(num_layers, batch_size, hidden_size)")
        return np.ascontiguousarray(array)

    def reset(self, rows: Any = None) -> None:
        """Back to the zero state: every row, or only `rows` (an index, a sequence of indices, or
        a boolean mask of shape (batch_size,)); the other rows go on undisturbed."""
        if rows is None:
            self._impl.reset()
            return
        self._impl.reset_rows(self._canonical_rows(rows))

    def _canonical_rows(self, rows: Any) -> list[int]:
        try:
            array = np.asarray(rows)
        except (TypeError, ValueError):
            raise TypeError(f"rows: expected row indices or a boolean mask, got {_checks.describe(rows)}") from None
        if array.dtype == np.bool_:
            if array.shape != (self._batch_size,):
                raise ValueError(f"rows: a boolean mask needs shape ({self._batch_size},), got {array.shape}")
            return np.flatnonzero(array).tolist()
        if array.dtype.kind not in "iu":
            raise TypeError(f"rows: expected row indices (integers) or a boolean mask, got dtype {array.dtype}")
        if array.ndim > 1:
            raise ValueError(f"rows: expected an index or a 1-D sequence of indices, got shape {array.shape}")
        indices = array.reshape(-1).tolist()
        bad = [r for r in indices if not 0 <= r < self._batch_size]
        if bad:
            raise ValueError(f"rows: expected indices in 0..{self._batch_size - 1} (batch_size {self._batch_size}), "
                             f"got {bad}")
        return indices


def _general_step_of(impl_step: Callable[..., np.ndarray], dtype: np.dtype) -> Callable[..., np.ndarray]:
    """The step for the calls the C function does not take (see Stream.__slots__): converts x_t,
    allocates the output when `out` is None, raises the errors that name what was wrong."""

    def general_step(x_t: Any, out: np.ndarray | None = None) -> np.ndarray:
        if type(x_t) is not np.ndarray or x_t.dtype is not dtype:
            x_t = _checks.real_array("x_t", x_t, dtype)
        return impl_step(x_t, out)

    general_step.__name__, general_step.__qualname__ = "step", "Stream.step"  # in TypeErrors
    return general_step

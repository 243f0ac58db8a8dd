"""The recurrent layers: RNN, LSTM and GRU with PyTorch's shapes, names and math.

Inputs are converted once: anything np.asarray takes (torch CPU tensors too) with a float or
integer dtype is cast to the model's dtype and made C-contiguous; bool, complex, object and
string arrays are refused with a TypeError. Shapes are never broadcast: a mismatch is a
ValueError that names the argument, the shape it got and the shape it needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import os

import numpy as np

from . import _checks, _core, _limits, backends, io
from ._spec import param_shapes, parameter_count

__all__ = ["RNN", "LSTM", "GRU", "Gradients", "ForwardCache", "PreparedModel", "load"]


@dataclass(frozen=True)
class Gradients:
    """What `backward` returns.

    input:  dL/dx, the shape of x.
    hx:     dL/dh0, the shape of h0 (LSTM: a tuple (dL/dh0, dL/dc0)); given also when the forward
            call used the default zero state.
    params: {name: dL/dparam}, the keys of state_dict().
    """

    input: np.ndarray
    hx: Any
    params: dict[str, np.ndarray]


class ForwardCache:
    """What `forward` keeps for `backward`: opaque, tied to the model and call that made it."""

    __slots__ = ("model", "backend", "inner", "steps", "batch", "unbatched", "version", "output_shape")

    def __init__(self, model, backend, inner, steps, batch, unbatched, version, output_shape):
        self.model = model
        self.backend = backend
        self.inner = inner
        self.steps = steps
        self.batch = batch
        self.unbatched = unbatched
        self.version = version
        self.output_shape = output_shape

    @property
    def nbytes(self) -> int:
        """Bytes held for BPTT (compiled backend; the reference keeps Python objects)."""
        return int(getattr(self.inner, "nbytes", 0))

    def __repr__(self) -> str:
        return f"<ForwardCache {self.backend.name} T={self.steps} N={self.batch} for {self.model!r}>"


class _Conventions:
    """A model's call conventions: the user's arrays (batch_first or not, batched or one
    sequence, anything np.asarray takes) checked once and made canonical for the backends, and
    the backends' results shaped back. Immutable; the model and its PreparedModels share one."""

    __slots__ = ("kind", "lstm", "dtype", "input_size", "hidden_size", "states", "batch_first")

    def __init__(self, kind: str, config: Any, dtype: np.dtype, batch_first: bool) -> None:
        self.kind = kind
        self.lstm = config.cell == "lstm"
        self.dtype = dtype
        self.input_size = config.input_size
        self.hidden_size = config.hidden_size
        self.states = config.num_layers * config.directions
        self.batch_first = batch_first

    # ------------------------------------------------------------------ into the backends
    def input(self, x: Any) -> tuple[np.ndarray, bool]:
        """x as (T, N, I) time-major C-contiguous in the model's dtype, and whether it was unbatched."""
        array = _checks.real_array("x", x, self.dtype)
        if array.ndim not in (2, 3):
            layout = "(N, T, I)" if self.batch_first else "(T, N, I)"
            raise ValueError(
                f"x: expected 3 dimensions {layout} or 2 dimensions (T, I) for one sequence, "
                f"got shape {array.shape}"
            )
        if array.shape[-1] != self.input_size:
            raise ValueError(f"x: expected input_size {self.input_size} on the last axis, got shape {array.shape}")
        if 0 in array.shape:  # checked before the reshapes below, so the shape reported is the caller's
            raise ValueError(f"x: expected at least one step and one sequence, got shape {array.shape}")
        unbatched = array.ndim == 2
        if unbatched:
            array = array[:, None, :]
        elif self.batch_first:
            array = array.transpose(1, 0, 2)
        return np.ascontiguousarray(array), unbatched

    def state_shape(self, batch: int, unbatched: bool) -> tuple[int, ...]:
        return (self.states, self.hidden_size) if unbatched else (self.states, batch, self.hidden_size)

    def state(self, name: str, value: Any, batch: int, unbatched: bool) -> np.ndarray:
        array = _checks.real_array(name, value, self.dtype)
        expected = self.state_shape(batch, unbatched)
        meaning = "(num_layers * num_directions, hidden_size)" if unbatched else \
            "(num_layers * num_directions, batch, hidden_size)"
        _checks.exact_shape(name, array, expected, meaning)
        return np.ascontiguousarray(array.reshape(self.state_shape(batch, False)))

    def hx(self, hx: Any, batch: int, unbatched: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        if hx is None:
            return None, None
        if self.lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx: LSTM takes a tuple (h0, c0), got {_checks.describe(hx)}")
            return (self.state("hx[0] (h0)", hx[0], batch, unbatched),
                    self.state("hx[1] (c0)", hx[1], batch, unbatched))
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx: {self.kind} takes one array h0, got a {type(hx).__name__} of {len(hx)}")
        return self.state("hx", hx, batch, unbatched), None

    def lengths(self, lengths: Any, steps: int, batch: int, unbatched: bool) -> np.ndarray | None:
        if lengths is None:
            return None
        array = _checks.to_numpy("lengths", lengths)
        if array.size == 0:
            raise ValueError(f"lengths: expected shape ({batch},), one length per sequence, got {array.shape}")
        if array.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {array.dtype}")
        if unbatched and array.ndim == 0:
            array = array.reshape(1)
        if array.shape != (batch,):
            raise ValueError(f"lengths: expected shape ({batch},), one length per sequence, got {array.shape}")
        bad = (array < 1) | (array > steps)
        if bad.any():
            raise ValueError(
                f"lengths: expected every length in 1..{steps} (the number of steps), "
                f"got {array[bad].tolist()} at positions {np.flatnonzero(bad).tolist()}"
            )
        return np.ascontiguousarray(array, dtype=np.int64)

    def call_arrays(self, x: Any, hx: Any, lengths: Any):
        """The canonical (x_tm, unbatched, h0, c0, lengths) of a call."""
        x_tm, unbatched = self.input(x)
        steps, batch = x_tm.shape[:2]
        h0, c0 = self.hx(hx, batch, unbatched)
        return x_tm, unbatched, h0, c0, self.lengths(lengths, steps, batch, unbatched)

    def grad_output(self, grad_output: Any, cache: ForwardCache) -> np.ndarray | None:
        if grad_output is None:
            return None
        array = _checks.real_array("grad_output", grad_output, self.dtype)
        _checks.exact_shape("grad_output", array, cache.output_shape, "(the shape of the forward output)")
        if cache.unbatched:
            array = array[:, None, :]
        elif self.batch_first:
            array = array.transpose(1, 0, 2)
        return np.ascontiguousarray(array)

    def grad_state(self, grad_state: Any, cache: ForwardCache):
        if grad_state is None:
            return None, None
        if self.lstm:
            if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
                raise TypeError(
                    f"grad_state: LSTM takes a tuple (dL/dh_n, dL/dc_n), got {_checks.describe(grad_state)}")
            h, c = grad_state
            grad_h = None if h is None else self.state("grad_state[0]", h, cache.batch, cache.unbatched)
            grad_c = None if c is None else self.state("grad_state[1]", c, cache.batch, cache.unbatched)
            return grad_h, grad_c
        if isinstance(grad_state, (tuple, list)):
            raise TypeError(f"grad_state: {self.kind} takes one array like h_n, got a {type(grad_state).__name__}")
        return self.state("grad_state", grad_state, cache.batch, cache.unbatched), None

    # ------------------------------------------------------------------ back to the user
    def output(self, y: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def user_state(self, h_n, c_n, unbatched):
        """h_n, or (h_n, c_n) for the LSTM: the model's state as the user passes it back."""
        if unbatched:
            h_n = h_n[:, 0, :]
            c_n = None if c_n is None else c_n[:, 0, :]
        return (h_n, c_n) if self.lstm else h_n

    def grad_input(self, grad_x: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            return grad_x[:, 0, :]
        return np.ascontiguousarray(grad_x.transpose(1, 0, 2)) if self.batch_first else grad_x


class _RecurrentBase:
    _gates = 1
    _family = "rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        dtype: Any = np.float32,
        seed: int | None = None,
        backend: str = "cpp",
    ) -> None:
        self.input_size = _limits.size("input_size", input_size)
        self.hidden_size = _limits.size("hidden_size", hidden_size)
        self.num_layers = _limits.size("num_layers", num_layers)
        self.bias = _checks.boolean("bias", bias)
        self._batch_first = _checks.boolean("batch_first", batch_first)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        self.dtype = _checks.float_dtype("dtype", dtype)
        self._check_parameter_memory()
        # The configuration every backend call takes, built once: the sizes above are fixed for
        # the model's life.
        self._config = _core.ModelConfig(self.cell, self.input_size, self.hidden_size, self.num_layers,
                                         self.bidirectional, self.bias)
        self.batch_first = self._batch_first  # builds the call conventions
        self.backend = backend
        self._version = 0
        self._params = self._initial_params(_checks.optional_seed("seed", seed))

    # ------------------------------------------------------------------ configuration
    @property
    def config(self) -> Any:
        """The hyper-parameters the backends run (rnncore._core.ModelConfig): cell, input_size,
        hidden_size, num_layers, bidirectional, bias, gates, directions."""
        return self._config

    @property
    def backend(self) -> str:
        """The name of the kernels calls run on: "cpp" (compiled) or "numpy" (rnncore.reference,
        the oracle); rnncore.backends.names() lists them."""
        return self._backend.name

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = backends.get(value)

    @property
    def batch_first(self) -> bool:
        """Whether batched inputs and outputs are (N, T, features) rather than (T, N, features)."""
        return self._batch_first

    @batch_first.setter
    def batch_first(self, value: bool) -> None:
        self._batch_first = _checks.boolean("batch_first", value)
        self._conventions = _Conventions(type(self).__name__, self._config, self.dtype, self._batch_first)

    @property
    def cell(self) -> str:
        """The cell name used by the kernels: rnn_tanh, rnn_relu, lstm or gru."""
        return self._family

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        return param_shapes(self.cell, self.input_size, self.hidden_size, self.num_layers, self.bidirectional,
                            self.bias)

    def _check_parameter_memory(self) -> None:
        # Before the first array: for many small layers Python's own bytes per array dominate,
        # and the largest weight is drawn in float64 first.
        values = parameter_count(self._gates, self.input_size, self.hidden_size, self.num_layers,
                                 self.bias, self.bidirectional)
        arrays = self.num_layers * self.num_directions * (4 if self.bias else 2)
        widest = max(self.input_size, self.num_directions * self.hidden_size)
        largest = self._gates * self.hidden_size * widest
        nbytes = values * self.dtype.itemsize + arrays * _limits.ARRAY_OVERHEAD_BYTES + largest * 8
        _limits.check_memory(f"{self!r} ({values} parameters in {arrays} arrays)", nbytes)

    def _initial_params(self, seed: int | None) -> dict[str, np.ndarray]:
        # PyTorch's default: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)). Drawn in float64 so
        # a seed gives the same model in float32 and float64.
        rng = np.random.default_rng(seed)
        bound = 1.0 / np.sqrt(self.hidden_size)
        return {
            name: rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            for name, shape in self._param_shapes().items()
        }

    def __repr__(self) -> str:
        extra = [f"num_layers={self.num_layers}"] if self.num_layers != 1 else []
        extra += self._repr_extra()
        for flag, default in (("bias", True), ("batch_first", False), ("bidirectional", False)):
            if getattr(self, flag) != default:
                extra.append(f"{flag}={getattr(self, flag)}")
        if self.dtype != np.float32:
            extra.append(f"dtype={self.dtype.name}")
        return f"{type(self).__name__}({', '.join([str(self.input_size), str(self.hidden_size), *extra])})"

    def _repr_extra(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays (optimizers update them in place), PyTorch's names."""
        return self._params

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter, with PyTorch's names, shapes and gate order."""
        return {name: value.copy() for name, value in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load parameters (numpy arrays, torch CPU tensors, nested lists...) with exactly the
        names and shapes of state_dict(). Nothing changes unless every entry is valid."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a mapping of name to array, got {_checks.describe(state_dict)}")
        shapes = self._param_shapes()
        missing = [name for name in shapes if name not in state_dict]
        extra = [name for name in state_dict if name not in shapes]
        if missing or extra:
            raise ValueError(
                f"state_dict: keys do not match {type(self).__name__}: missing {missing}, unexpected {extra}"
            )
        loaded = {}
        for name, shape in shapes.items():
            array = _checks.real_array(f"state_dict[{name!r}]", state_dict[name], self.dtype)
            _checks.exact_shape(f"state_dict[{name!r}]", array, shape)
            loaded[name] = np.array(array, dtype=self.dtype, order="C", copy=True)
        current = self._params
        if all(isinstance(current.get(name), np.ndarray) and current[name].shape == value.shape
               and current[name].dtype == value.dtype and current[name].flags.c_contiguous
               and current[name].flags.writeable for name, value in loaded.items()):
            # Copy into the live arrays (as torch does), so that an optimizer built on
            # parameters() before the load keeps updating the model's weights.
            for name, value in loaded.items():
                current[name][...] = value
        else:
            self._params = loaded
        self._version += 1

    def num_parameters(self) -> int:
        return int(sum(value.size for value in self._params.values()))

    def astype(self, dtype: Any) -> "_RecurrentBase":
        """A copy of the model with parameters in `dtype` (float32 or float64)."""
        clone = self._clone(_checks.float_dtype("dtype", dtype))
        clone.load_state_dict(self._params)
        return clone

    def _clone(self, dtype: np.dtype) -> "_RecurrentBase":
        return type(self)(
            self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
            batch_first=self.batch_first, bidirectional=self.bidirectional, dtype=dtype,
            backend=self.backend, **self._clone_kwargs(),
        )

    def _clone_kwargs(self) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ streaming and files
    def stream(self, batch_size: int = 1, threads: int = 1) -> Any:
        """A stream that runs this model one frame at a time with the state carried between
        calls (rnncore.streaming.Stream). Unidirectional models only; the stream keeps a packed
        copy of the current weights. threads > 1 shares each step's weight panels among that
        many threads (the same results bit for bit): worth it for large layers stepped back to
        back (an H = 256 LSTM step 38 -> ~12 us on two cores), not for small ones or for steps
        with long pauses between them, after which the other threads must be woken. A stream
        serves one caller at a time (concurrent calls raise RuntimeError): one per thread."""
        from .streaming import Stream

        return Stream(self, batch_size, threads)

    def save(self, path: Any) -> None:
        """Write the model to a safetensors file (rnncore.io); rnncore.load(path) reads it back."""
        io.write_file(path, self._config, self._params, batch_first=self.batch_first)

    def load(self, path: Any, *, max_bytes: int | None = None) -> None:
        """Load parameters from a file written by save() for a model of the same kind and sizes
        (converted to this model's dtype). Everything is checked first: on any error (OSError,
        rnncore.ModelFileError) the model is left as it was."""
        stored = io.read(path, max_bytes=io.MAX_FILE_BYTES if max_bytes is None else max_bytes)
        ours, theirs = self._config, stored.config
        differ = [f"{key}={getattr(theirs, key)!r} (the model has {getattr(ours, key)!r})"
                  for key in ("cell", "input_size", "hidden_size", "num_layers", "bias", "bidirectional")
                  if getattr(theirs, key) != getattr(ours, key)]
        if differ:
            raise io.ModelFileError(f"{os.fspath(path)}: holds another model: {', '.join(differ)}")
        self.load_state_dict(stored.params)

    # ------------------------------------------------------------------ running
    def _run(self, x, hx, lengths, backend, training):
        backend = self._backend if backend is None else backends.get(backend)
        calls = self._conventions
        x_tm, unbatched, h0, c0, lens = calls.call_arrays(x, hx, lengths)
        y, h_n, c_n, inner = backend.forward(self._config, self._params, x_tm, h0, c0, lens, training=training)
        output = calls.output(y, unbatched)
        state = calls.user_state(h_n, c_n, unbatched)
        cache = None
        if training:
            cache = ForwardCache(self, backend, inner, x_tm.shape[0], x_tm.shape[1], unbatched, self._version,
                                 output.shape)
        return output, state, cache

    def forward(self, x: Any, hx: Any = None, lengths: Any = None, *, backend: str | None = None):
        """Run the sequence keeping what BPTT needs. Returns (output, state, cache); state is h_n
        (LSTM: (h_n, c_n)); pass cache to backward()."""
        return self._run(x, hx, lengths, backend, training=True)

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None, *, backend: str | None = None):
        """Inference: (output, h_n), or (output, (h_n, c_n)) for the LSTM, as torch.nn does."""
        output, state, _ = self._run(x, hx, lengths, backend, training=False)
        return output, state

    def prepare(self) -> "PreparedModel":
        """This model's current weights packed once for inference (a PreparedModel): calls
        then skip the packing that every model call does, most of the time of a short call
        such as one decoder step. It holds its own copy: prepare again after changing weights."""
        return PreparedModel(self)

    # ------------------------------------------------------------------ BPTT
    def backward(self, cache: ForwardCache, grad_output: Any, grad_state: Any = None) -> Gradients:
        """Backpropagation through time for the forward call that returned `cache`.

        grad_output: dL/d(output), the shape of the output (None: zero). grad_state: dL/d(h_n)
        like h_n (LSTM: a tuple (dL/dh_n, dL/dc_n), either may be None), or None.
        """
        if not isinstance(cache, ForwardCache):
            raise TypeError(f"cache: expected the cache returned by forward(), got {_checks.describe(cache)}")
        if cache.model is not self:
            raise ValueError(f"cache: it was made by another model ({cache.model!r}), not this {self!r}")
        if cache.version != self._version:
            raise ValueError("cache: the parameters were reloaded after the forward call that made it; run forward again")
        calls = self._conventions
        grad_y = calls.grad_output(grad_output, cache)
        grad_h_n, grad_c_n = calls.grad_state(grad_state, cache)
        grad_x, grad_h0, grad_c0, grads = cache.backend.backward(cache.inner, self._params, grad_y, grad_h_n,
                                                                 grad_c_n)
        return Gradients(calls.grad_input(grad_x, cache.unbatched),
                         calls.user_state(grad_h0, grad_c0, cache.unbatched), grads)


class PreparedModel:
    """A model's weights packed once for inference, with the model's call conventions.

        fast = model.prepare()
        y, h_n = fast(x, hx=None, lengths=None)     # the same as model(x, hx, lengths)

    Every model call packs W_ih and W_hh of every layer and direction into the kernels' layout
    before it runs (a read and a write of every weight); a PreparedModel did that once, when it
    was made. It gives the same results bit for bit as the model's call, except for a single
    step (T = 1) of at most 4 sequences, which the model runs as matrix-vector products on the
    unpacked weights (agreeing to float rounding). It holds its own copy of the weights, taken
    when it was made: later changes to the model (an optimizer step, load_state_dict, setting
    batch_first) do not reach it. It runs on the model's backend (backend.prepare). Memory
    (`nbytes`): the parameters' size where the input and hidden sizes are multiples of the
    panel width (``build_info()["panel_floats"]``), 1.5-2.5x it at other sizes from H = 48 up
    (padded panels and a second, per-gate packing of W_hh).
    """

    def __init__(self, model: _RecurrentBase) -> None:
        if not isinstance(model, _RecurrentBase):
            raise TypeError(f"model: expected an rnncore RNN, LSTM or GRU, got {_checks.describe(model)}")
        self._description = repr(model)
        self._conventions = model._conventions  # immutable: later changes to the model replace it
        self._prepared = model._backend.prepare(model.config, model.parameters())

    @property
    def nbytes(self) -> int:
        """Bytes of packed weights held."""
        return int(self._prepared.nbytes)

    def __repr__(self) -> str:
        return f"<PreparedModel of {self._description}, {self.nbytes} bytes>"

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None):
        """Inference: (output, h_n), or (output, (h_n, c_n)) for the LSTM, as the model's call."""
        calls = self._conventions
        x_tm, unbatched, h0, c0, lens = calls.call_arrays(x, hx, lengths)
        y, h_n, c_n = self._prepared(x_tm, h0, c0, lens)
        return calls.output(y, unbatched), calls.user_state(h_n, c_n, unbatched)


class RNN(_RecurrentBase):
    """Elman RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act = tanh or relu (torch.nn.RNN)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, bidirectional: bool = False,
                 dtype: Any = np.float32, seed: int | None = None, backend: str = "cpp") -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, bidirectional, dtype, seed, backend)

    @property
    def cell(self) -> str:
        return f"rnn_{self.nonlinearity}"

    def _repr_extra(self) -> list[str]:
        return [] if self.nonlinearity == "tanh" else [f"nonlinearity={self.nonlinearity!r}"]

    def _clone_kwargs(self) -> dict[str, Any]:
        return {"nonlinearity": self.nonlinearity}


class GRU(_RecurrentBase):
    """GRU with PyTorch's gate order r, z, n and b_hn inside the reset product (torch.nn.GRU)."""

    _gates = 3
    _family = "gru"


class LSTM(_RecurrentBase):
    """LSTM with PyTorch's gate order i, f, g, o (torch.nn.LSTM); the state is a pair (h, c)."""

    _gates = 4
    _family = "lstm"


def load(path: Any, *, dtype: Any = None, max_bytes: int = io.MAX_FILE_BYTES) -> _RecurrentBase:
    """A new model (RNN, LSTM or GRU) from a file written by `model.save` or the C++ library.
    dtype: None keeps the file's (float32 or float64); otherwise the parameters are converted."""
    stored = io.read(path, max_bytes=max_bytes)
    config = stored.config
    dtype = stored.dtype if dtype is None else _checks.float_dtype("dtype", dtype)
    kwargs = dict(num_layers=config.num_layers, bias=config.bias, batch_first=stored.batch_first,
                  bidirectional=config.bidirectional, dtype=dtype, seed=0)
    if config.cell == "lstm":
        model = LSTM(config.input_size, config.hidden_size, **kwargs)
    elif config.cell == "gru":
        model = GRU(config.input_size, config.hidden_size, **kwargs)
    else:
        model = RNN(config.input_size, config.hidden_size, nonlinearity=config.cell[4:], **kwargs)
    model.load_state_dict(stored.params)
    return model

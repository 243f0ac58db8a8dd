"""The recurrent layers: RNN, LSTM and GRU with PyTorch's shapes, names and math.

Inputs are converted once: anything np.asarray takes (torch CPU tensors too) with a float or
integer dtype is cast to the model's dtype and made C-contiguous; bool, complex, object and
string arrays are refused with a TypeError. Shapes are never broadcast: a mismatch is a
ValueError that names the argument, the shape it got and the shape it needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import copy

import numpy as np

from . import _checks, _compiled, _limits, reference
from ._compiled import param_names
from .nn import parameter_count

__all__ = ["RNN", "LSTM", "GRU", "Gradients", "ForwardCache", "PreparedModel"]

BACKENDS = ("cpp", "numpy")


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
        return f"<ForwardCache {self.backend} T={self.steps} N={self.batch} for {self.model!r}>"


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
        self.batch_first = _checks.boolean("batch_first", batch_first)
        self.bidirectional = _checks.boolean("bidirectional", bidirectional)
        self.dtype = _checks.float_dtype("dtype", dtype)
        self._check_parameter_memory()
        self.backend = backend
        self._version = 0
        self._params = self._initial_params(_checks.optional_seed("seed", seed))

    # ------------------------------------------------------------------ configuration
    @property
    def backend(self) -> str:
        """"cpp" (the compiled kernels) or "numpy" (rnncore.reference, the oracle)."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        self._backend = self._check_backend("backend", value)

    @staticmethod
    def _check_backend(name: str, value: Any) -> str:
        if value not in BACKENDS:
            raise ValueError(f"{name}: expected one of {BACKENDS}, got {value!r}")
        return value

    @property
    def cell(self) -> str:
        """The cell name used by the kernels: rnn_tanh, rnn_relu, lstm or gru."""
        return self._family

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def _param_shapes(self) -> dict[str, tuple[int, ...]]:
        gh = self._gates * self.hidden_size
        shapes = {}
        for name in param_names(self.num_layers, self.bidirectional, self.bias):
            layer = int(name.split("_l")[1].split("_")[0])
            width = self.input_size if layer == 0 else self.num_directions * self.hidden_size
            if name.startswith("weight_ih"):
                shapes[name] = (gh, width)
            elif name.startswith("weight_hh"):
                shapes[name] = (gh, self.hidden_size)
            else:
                shapes[name] = (gh,)
        return shapes

    def _check_parameter_memory(self) -> None:
        # Before the first array: for many small layers Python's own bytes per array dominate,
        # and the largest weight is drawn in float64 first.
        values = parameter_count(self._family, self.input_size, self.hidden_size, self.num_layers,
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
        from . import io

        io.save(self, path)

    def load(self, path: Any, *, max_bytes: int | None = None) -> None:
        """Load parameters from a file written by save() for a model of the same kind and sizes.
        On any error (OSError, rnncore.ModelFileError) the model is left as it was."""
        from . import io

        io.load_into(self, path, max_bytes=io.MAX_FILE_BYTES if max_bytes is None else max_bytes)

    # ------------------------------------------------------------------ input handling
    def _canonical_input(self, x: Any) -> tuple[np.ndarray, bool]:
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

    def _state_shape(self, batch: int, unbatched: bool) -> tuple[int, ...]:
        states = self.num_layers * self.num_directions
        return (states, self.hidden_size) if unbatched else (states, batch, self.hidden_size)

    def _canonical_state(self, name: str, value: Any, batch: int, unbatched: bool) -> np.ndarray:
        array = _checks.real_array(name, value, self.dtype)
        expected = self._state_shape(batch, unbatched)
        meaning = "(num_layers * num_directions, hidden_size)" if unbatched else \
            "(num_layers * num_directions, batch, hidden_size)"
        _checks.exact_shape(name, array, expected, meaning)
        return np.ascontiguousarray(array.reshape(self._state_shape(batch, False)))

    def _canonical_hx(self, hx: Any, batch: int, unbatched: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        if hx is None:
            return None, None
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx: {type(self).__name__} takes one array h0, got a {type(hx).__name__} of {len(hx)}")
        return self._canonical_state("hx", hx, batch, unbatched), None

    def _canonical_lengths(self, lengths: Any, steps: int, batch: int, unbatched: bool) -> np.ndarray | None:
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

    def _backend_for(self, backend: str | None) -> str:
        return self.backend if backend is None else self._check_backend("backend", backend)

    # ------------------------------------------------------------------ running
    def _call_arrays(self, x, hx, lengths, compiled: bool):
        """The canonical (x_tm, unbatched, h0, c0, lengths) of a call; the compiled kernels take
        lengths=None for sequences that are all full (their unmasked path)."""
        x_tm, unbatched = self._canonical_input(x)
        steps, batch = x_tm.shape[:2]
        h0, c0 = self._canonical_hx(hx, batch, unbatched)
        lens = self._canonical_lengths(lengths, steps, batch, unbatched)
        if compiled and lens is not None and (lens == steps).all():
            lens = None
        return x_tm, unbatched, h0, c0, lens

    def _run(self, x, hx, lengths, backend, training):
        backend = self._backend_for(backend)
        x_tm, unbatched, h0, c0, lens = self._call_arrays(x, hx, lengths, backend == "cpp")
        steps, batch = x_tm.shape[:2]
        kwargs = dict(num_layers=self.num_layers, bidirectional=self.bidirectional)
        if backend == "cpp":
            y, h_n, c_n, inner = _compiled.forward(self.cell, self._params, x_tm, h0, c0, lens,
                                                   training=training, **kwargs)
        else:
            zeros = np.zeros(self._state_shape(batch, False), dtype=self.dtype)
            if lens is None:
                lens = np.full(batch, steps, dtype=np.int64)
            y, h_n, c_n, inner = reference.forward(
                self.cell, self._params, x_tm, zeros if h0 is None else h0,
                (zeros if c0 is None else c0) if self._family == "lstm" else None, lens, **kwargs)
        output = self._user_output(y, unbatched)
        state = self._user_state(h_n, c_n, unbatched)
        cache = None
        if training:
            cache = ForwardCache(self, backend, inner, steps, batch, unbatched, self._version, output.shape)
        return output, state, cache

    def _user_output(self, y: np.ndarray, unbatched: bool) -> np.ndarray:
        if unbatched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def _user_state(self, h_n, c_n, unbatched):
        return h_n[:, 0, :] if unbatched else h_n

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
    def _canonical_grad_output(self, grad_output: Any, cache: ForwardCache) -> np.ndarray | None:
        if grad_output is None:
            return None
        array = _checks.real_array("grad_output", grad_output, self.dtype)
        _checks.exact_shape("grad_output", array, cache.output_shape, "(the shape of the forward output)")
        if cache.unbatched:
            array = array[:, None, :]
        elif self.batch_first:
            array = array.transpose(1, 0, 2)
        return np.ascontiguousarray(array)

    def _canonical_grad_state(self, grad_state: Any, cache: ForwardCache):
        if grad_state is None:
            return None, None
        if isinstance(grad_state, (tuple, list)):
            raise TypeError(
                f"grad_state: {type(self).__name__} takes one array like h_n, got a {type(grad_state).__name__}"
            )
        return self._canonical_state("grad_state", grad_state, cache.batch, cache.unbatched), None

    def _user_grad_hx(self, grad_h0, grad_c0, unbatched):
        return grad_h0[:, 0, :] if unbatched else grad_h0

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
        grad_y = self._canonical_grad_output(grad_output, cache)
        grad_h_n, grad_c_n = self._canonical_grad_state(grad_state, cache)
        if cache.backend == "cpp":
            grad_x, grad_h0, grad_c0, grads = _compiled.backward(
                self.cell, self._params, cache.inner, grad_y, grad_h_n, grad_c_n)
        else:
            shape = self._state_shape(cache.batch, False)
            y_shape = (cache.steps, cache.batch, self.num_directions * self.hidden_size)
            grad_x, grad_h0, grad_c0, grads = reference.backward(
                self.cell, self._params, cache.inner,
                np.zeros(y_shape, self.dtype) if grad_y is None else grad_y,
                np.zeros(shape, self.dtype) if grad_h_n is None else grad_h_n,
                grad_c_n if self._family == "lstm" else None)
        if cache.unbatched:
            grad_x = grad_x[:, 0, :]
        elif self.batch_first:
            grad_x = np.ascontiguousarray(grad_x.transpose(1, 0, 2))
        return Gradients(grad_x, self._user_grad_hx(grad_h0, grad_c0, cache.unbatched), grads)


class PreparedModel:
    """A model's weights packed once for inference, with the model's call conventions.

        fast = model.prepare()
        y, h_n = fast(x, hx=None, lengths=None)     # the same as model(x, hx, lengths)

    Every model call packs W_ih and W_hh of every layer and direction into the kernels' layout
    before it runs (a read and a write of every weight); a PreparedModel did that once, when it
    was made. It gives the same results bit for bit as the model's call, except for a single
    step (T = 1) of at most 4 sequences, which the model runs as matrix-vector products on the
    unpacked weights (agreeing to float rounding). It holds its own copy of the weights, taken
    when it was made: later changes to the model (an optimizer step, load_state_dict) do not
    reach it. Compiled kernels only. Memory (`nbytes`): the parameters' size where the input and
    hidden sizes are multiples of the panel width (``build_info()["panel_floats"]``), 1.5-2.5x
    it at other sizes from H = 48 up (padded panels and a second, per-gate packing of W_hh).
    """

    def __init__(self, model: _RecurrentBase) -> None:
        if not isinstance(model, _RecurrentBase):
            raise TypeError(f"model: expected an rnncore RNN, LSTM or GRU, got {_checks.describe(model)}")
        # The call conventions (sizes, dtype, batch_first) as they are now, apart from the model.
        spec = copy.copy(model)
        spec._params = {}
        self._spec = spec
        self._prepared = _compiled.prepare(model.cell, model.parameters())

    @property
    def nbytes(self) -> int:
        """Bytes of packed weights held."""
        return int(self._prepared.nbytes)

    def __repr__(self) -> str:
        return f"<PreparedModel of {self._spec!r}, {self.nbytes} bytes>"

    def __call__(self, x: Any, hx: Any = None, lengths: Any = None):
        """Inference: (output, h_n), or (output, (h_n, c_n)) for the LSTM, as the model's call."""
        spec = self._spec
        x_tm, unbatched, h0, c0, lens = spec._call_arrays(x, hx, lengths, True)
        y, h_n, c_n = _compiled.forward_prepared(self._prepared, x_tm, h0, c0, lens)
        return spec._user_output(y, unbatched), spec._user_state(h_n, c_n, unbatched)


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

    def _canonical_hx(self, hx, batch, unbatched):
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx: LSTM takes a tuple (h0, c0), got {_checks.describe(hx)}")
        return (self._canonical_state("hx[0] (h0)", hx[0], batch, unbatched),
                self._canonical_state("hx[1] (c0)", hx[1], batch, unbatched))

    def _user_state(self, h_n, c_n, unbatched):
        return (h_n[:, 0, :], c_n[:, 0, :]) if unbatched else (h_n, c_n)

    def _canonical_grad_state(self, grad_state, cache):
        if grad_state is None:
            return None, None
        if not isinstance(grad_state, (tuple, list)) or len(grad_state) != 2:
            raise TypeError(f"grad_state: LSTM takes a tuple (dL/dh_n, dL/dc_n), got {_checks.describe(grad_state)}")
        h, c = grad_state
        grad_h = None if h is None else self._canonical_state("grad_state[0]", h, cache.batch, cache.unbatched)
        grad_c = None if c is None else self._canonical_state("grad_state[1]", c, cache.batch, cache.unbatched)
        return grad_h, grad_c

    def _user_grad_hx(self, grad_h0, grad_c0, unbatched):
        return (grad_h0[:, 0, :], grad_c0[:, 0, :]) if unbatched else (grad_h0, grad_c0)

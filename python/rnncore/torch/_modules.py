"""rt.RNN, rt.LSTM and rt.GRU: torch.nn's recurrent layers with rnncore's kernels inside.

Each is a subclass of its torch.nn layer (isinstance(rt.LSTM(...), torch.nn.LSTM) holds): the
constructor, parameters (names, shapes, init), state_dict, .to(), train()/eval() and hooks are
torch.nn's own; only forward() differs, calling rnncore's forward and BPTT through the custom
operators of rnncore.torch._ops.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnncore.torch import _ops

_DTYPES = (torch.float32, torch.float64)


class _RnncoreMixin:
    """forward() for a torch.nn.RNNBase subclass; _cell() names the kernels' cell, _torch_type is
    the torch.nn layer it stands for. (Subclasses of RNNBase, not of torch.nn.LSTM itself:
    torch.compile refuses to trace any instance of torch.nn.RNN / GRU / LSTM.)"""

    def _cell(self) -> str:
        raise NotImplementedError

    def _check_supported(self) -> None:
        if getattr(self, "proj_size", 0) > 0:
            raise NotImplementedError(
                f"proj_size: rnncore.torch does not support LSTM projections yet (got proj_size="
                f"{self.proj_size}); use torch.nn.LSTM for this layer")
        # The flat weights (torch.nn's own list, refreshed by _update_flat_weights) rather than
        # named_parameters(), whose generator cost ~40 us.
        for name, p in zip(self._flat_weights_names, self._flat_weights):
            if p.device.type != "cpu":
                raise ValueError(f"{name}: rnncore.torch runs on the CPU, got a parameter on {p.device}")
            if p.dtype not in _DTYPES:
                raise TypeError(f"{name}: rnncore.torch runs float32 and float64, got {p.dtype}")

    # ---------------------------------------------------------------- conversions
    @classmethod
    def from_torch(cls, module: nn.RNNBase):
        """An rnncore layer with the configuration and a copy of the weights of `module` (a
        torch.nn layer of the same kind, on the CPU)."""
        torch_type = cls._torch_type
        if not isinstance(module, nn.RNNBase) or module.mode not in cls._modes:
            raise TypeError(f"module: expected a {torch_type.__module__}.{torch_type.__name__}, "
                            f"got {type(module).__name__}")
        param = module.weight_ih_l0
        new = cls(**_config_kwargs(module), device=param.device, dtype=param.dtype)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new

    def to_torch(self) -> nn.RNNBase:
        """The torch.nn layer with this configuration and a copy of these weights."""
        torch_type = self._torch_type
        param = self.weight_ih_l0
        new = torch_type(**_config_kwargs(self), device=param.device, dtype=param.dtype)
        new.load_state_dict(self.state_dict())
        new.train(self.training)
        return new

    # ---------------------------------------------------------------- forward
    def forward(self, input: Any, hx: Any = None, lengths: Optional[Tensor] = None):
        """torch.nn's forward: input (L, N, I) / (N, L, I) with batch_first / (L, I) unbatched, or a
        PackedSequence (the output is then one too); hx as torch.nn takes it. `lengths` (an
        extension, padded input only): int64 [N] CPU tensor, sequence b runs lengths[b] steps,
        the output is zero past it and its final state is the one after its own last step."""
        self._refresh_flat_weights()
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths: not taken with a PackedSequence, which carries its own")
            padded, packed_lengths = pad_packed_sequence(input)
            output, state = self._run(padded, hx, packed_lengths, False)
            return _pack_like(output, packed_lengths, input), state
        if not isinstance(input, Tensor):
            raise TypeError(f"input: expected a Tensor or PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"input: expected 3 dimensions (batched) or 2 (unbatched), got shape "
                             f"{tuple(input.shape)}")
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if unbatched:
            hx = self._map_state(hx, lambda h, name: _unbatched_state(h, name).unsqueeze(1))
        output, state = self._run(x, hx, self._check_lengths(lengths, x), unbatched)
        if unbatched:
            return output.squeeze(1), self._map_state(state, lambda h, _: h.squeeze(1))
        return (output.transpose(0, 1) if self.batch_first else output), state

    def _map_state(self, state, fn):
        if state is None:
            return None
        return fn(state, "hx")

    def _check_lengths(self, lengths, x: Tensor) -> Optional[Tensor]:
        if lengths is None:
            return None
        if not isinstance(lengths, Tensor):
            lengths = torch.as_tensor(lengths)
        if lengths.requires_grad or lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"lengths: expected an integer tensor without requires_grad, got dtype "
                            f"{lengths.dtype}, requires_grad={lengths.requires_grad}")
        if lengths.device.type != "cpu":
            raise ValueError(f"lengths: expected a CPU tensor, got one on {lengths.device}")
        steps, batch = x.shape[0], x.shape[1]
        if tuple(lengths.shape) != (batch,):
            raise ValueError(f"lengths: expected shape ({batch},), one per sequence, got {tuple(lengths.shape)}")
        if batch and (int(lengths.min()) < 1 or int(lengths.max()) > steps):
            raise ValueError(f"lengths: expected every length in 1..{steps}, got {lengths.tolist()}")
        return lengths

    def _state(self, h: Any, name: str, x: Tensor, dtype) -> Tensor:
        if not isinstance(h, Tensor):
            raise TypeError(f"{name}: expected a Tensor, got {type(h).__name__}")
        expected = (self.num_layers * (2 if self.bidirectional else 1), x.shape[1], self.hidden_size)
        if tuple(h.shape) != expected:
            raise ValueError(f"{name}: expected hidden size {expected} (num_layers * num_directions, "
                             f"batch, hidden_size), got {tuple(h.shape)}")
        if h.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype} (the layer's), got {h.dtype}")
        if h.device.type != "cpu":
            raise ValueError(f"{name}: expected a CPU tensor, got one on {h.device}")
        return h.contiguous()

    def _states(self, hx, x: Tensor, dtype):
        """(h0, c0) as the kernels take them (None: zeros)."""
        if hx is None:
            return None, None
        return self._state(hx, "hx", x, dtype), None

    def _result_state(self, h_n: Tensor, c_n: Tensor):
        return h_n

    def _refresh_flat_weights(self) -> None:
        """torch.nn's _update_flat_weights (a name may now hold another tensor: e.g.
        torch.func.functional_call swaps the parameters) without its getattr per name, which
        cost ~25 us a call: a name is looked up where getattr finds a module's weight, the
        instance dict and then _parameters; anywhere else, torch's own lookup runs."""
        if torch.compiler.is_compiling():
            self._update_flat_weights()
            return
        found, params = self.__dict__, self._parameters
        for ref, name in zip(self._flat_weight_refs, self._flat_weights_names):
            weight = found.get(name)
            if weight is None:
                weight = params.get(name)
                if weight is None:
                    self._update_flat_weights()
                    return
            if ref is not None and ref() is not weight:
                self._init_flat_weights()
                return

    def _kernel_weights(self) -> tuple[list, list]:
        """(the flat weights, contiguous; their NumPy views for the kernels). The views are kept
        between calls while every weight has the same address, dtype and shape (then the same
        view is valid: a contiguous CPU tensor is its address, dtype and shape), and the
        weights' checks run again whenever a view is made: detach().numpy() and the checks cost
        ~30 us a call for a 2-layer model, a tenth of the kernels' time on a short sequence."""
        weights = [w.contiguous() for w in self._flat_weights]
        if torch.compiler.is_compiling():
            self._check_supported()  # (traced: the custom op takes the tensors, not views)
            return weights, None
        kept = self.__dict__.get("_kernel_views")
        # (proj_size set after construction: the checks below raise)
        if kept is not None and len(kept[0]) == len(weights) and not getattr(self, "proj_size", 0):
            for w, (address, dtype, shape) in zip(weights, kept[0]):
                if w.data_ptr() != address or w.dtype is not dtype or w.shape != shape or not w.is_cpu:
                    break
            else:
                return weights, kept[1]
        self._check_supported()
        arrays = _ops._arrays(weights)
        self.__dict__["_kernel_views"] = ([(w.data_ptr(), w.dtype, w.shape) for w in weights], arrays)
        return weights, arrays

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_kernel_views", None)  # (views of this process's memory)
        return state

    def _run(self, x: Tensor, hx, lengths: Optional[Tensor], unbatched: bool):
        weights, arrays = self._kernel_weights()
        dtype = weights[0].dtype
        if x.dtype != dtype:
            raise TypeError(f"input: expected dtype {dtype} (the layer's parameters), got {x.dtype}")
        if x.device.type != "cpu":
            raise ValueError(f"input: expected a CPU tensor, got one on {x.device}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"input: expected input_size {self.input_size} on the last axis, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input: expected at least one step and one sequence, got shape {tuple(x.shape)}")
        h0, c0 = self._states(hx, x, dtype)
        if lengths is not None:
            lengths = None if bool((lengths == x.shape[0]).all()) else lengths.to(torch.int64).contiguous()
        masks = self._dropout_masks(x, dtype)
        keep = torch.is_grad_enabled() and (
            x.requires_grad or any(w.requires_grad for w in weights)
            or any(h is not None and h.requires_grad for h in (h0, c0)))
        x = x.contiguous()
        call = (self._cell(), self.num_layers, self.bidirectional, self.bias)
        if torch.compiler.is_compiling():
            y, h_n, c_n, _ = _ops.rnn_forward(x, h0, c0, lengths, masks, weights, *call, keep)
        elif keep:  # eager: autograd.Function, far cheaper per call than a custom op's dispatch
            y, h_n, c_n = _ops.RnnFunction.apply(x, h0, c0, lengths, masks, *call, arrays, *weights)
        else:
            y, h_n, c_n = _ops.forward_no_grad(x, h0, c0, lengths, masks, weights, *call, arrays)
        return y, self._result_state(h_n, c_n)

    def _dropout_masks(self, x: Tensor, dtype) -> Optional[Tensor]:
        """torch's dropout between layers: a Bernoulli(1 - p) mask per value of each non-last
        layer's output, scaled by 1/(1 - p), drawn with torch's generator (torch.manual_seed)."""
        p = float(self.dropout)
        if not self.training or p == 0.0 or self.num_layers == 1:
            return None
        shape = (self.num_layers - 1, x.shape[0], x.shape[1], (2 if self.bidirectional else 1) * self.hidden_size)
        if p == 1.0:
            return torch.zeros(shape, dtype=dtype)
        return torch.empty(shape, dtype=dtype).bernoulli_(1.0 - p).div_(1.0 - p)


def _unbatched_state(h: Any, name: str) -> Tensor:
    if not isinstance(h, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(h).__name__}")
    if h.dim() != 2:
        raise ValueError(f"{name}: for unbatched input expected 2 dimensions (num_layers * "
                         f"num_directions, hidden_size), got shape {tuple(h.shape)}")
    return h


def _pack_like(output: Tensor, lengths: Tensor, like: PackedSequence) -> PackedSequence:
    """output [T, N, *] (sequences in the caller's order) packed with like's batch order."""
    if like.sorted_indices is not None:
        output = output.index_select(1, like.sorted_indices)
        lengths = lengths.index_select(0, like.sorted_indices.cpu())
    data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


def _config_kwargs(module: nn.RNNBase) -> dict:
    kwargs = dict(input_size=module.input_size, hidden_size=module.hidden_size,
                  num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  dropout=module.dropout, bidirectional=module.bidirectional)
    if module.mode.startswith("RNN"):
        kwargs["nonlinearity"] = module.nonlinearity
    if module.mode == "LSTM":
        kwargs["proj_size"] = module.proj_size
    return kwargs


class RNN(_RnncoreMixin, nn.RNNBase):
    """torch.nn.RNN (tanh or relu) on rnncore's kernels."""

    _torch_type = nn.RNN
    _modes = ("RNN_TANH", "RNN_RELU")

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(f"RNN_{nonlinearity.upper()}", input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional, device=device, dtype=dtype)
        self._check_supported()

    def _cell(self) -> str:
        return f"rnn_{self.nonlinearity}"


class GRU(_RnncoreMixin, nn.RNNBase):
    """torch.nn.GRU on rnncore's kernels."""

    _torch_type = nn.GRU
    _modes = ("GRU",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None) -> None:
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)
        self._check_supported()

    def _cell(self) -> str:
        return "gru"


class LSTM(_RnncoreMixin, nn.RNNBase):
    """torch.nn.LSTM on rnncore's kernels (proj_size must be 0)."""

    _torch_type = nn.LSTM
    _modes = ("LSTM",)

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None) -> None:
        if proj_size:
            self.proj_size = proj_size
            self._check_supported()
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device=device, dtype=dtype)
        self._check_supported()

    def _cell(self) -> str:
        return "lstm"

    def _map_state(self, state, fn):
        if state is None:
            return None
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"hx: LSTM takes a tuple (h0, c0), got {type(state).__name__}")
        return (fn(state[0], "hx[0] (h0)"), fn(state[1], "hx[1] (c0)"))

    def _states(self, hx, x: Tensor, dtype):
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"hx: LSTM takes a tuple (h0, c0), got {type(hx).__name__}")
        return self._state(hx[0], "hx[0] (h0)", x, dtype), self._state(hx[1], "hx[1] (c0)", x, dtype)

    def _result_state(self, h_n: Tensor, c_n: Tensor):
        return (h_n, c_n)

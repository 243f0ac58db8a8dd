"""What a recurrent model is made of, in one place: cell names, gate counts, parameter names and
shapes. The layers, both backends, the model files, streams and rnncore.nn read them from here
(C++ callers have the same table in rnncore/model.h).

Parameters, per layer k and direction suffix ("" or "_reverse"), in PyTorch's order:
    weight_ih_l{k}{suffix}  (G*H, I_k)     G = gate_count(cell); I_0 = input_size, I_k = D*H
    weight_hh_l{k}{suffix}  (G*H, H)       D = 2 if bidirectional else 1
    bias_ih_l{k}{suffix}    (G*H,)         only with bias
    bias_hh_l{k}{suffix}    (G*H,)
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["CELLS", "CELL_CODES", "FAMILY_GATES", "gate_count", "param_names", "param_shapes", "parameter_count"]

# The kernels' cell names; CELL_CODES are rnncore._core's integer codes (rnncore::CellKind).
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
CELL_CODES = {"rnn_tanh": 0, "rnn_relu": 1, "lstm": 2, "gru": 3}
# Gate blocks stacked in each weight's rows, by model family (rnncore.nn.parameter_count's kinds).
FAMILY_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_GATE_COUNTS = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_KINDS_WITH_BIAS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def gate_count(cell: str) -> int:
    """Number of gate blocks G stacked in the rows of each weight matrix (1, 1, 4, 3)."""
    try:
        return _GATE_COUNTS[cell]
    except KeyError:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}") from None


@lru_cache(maxsize=256)
def _names(num_layers: int, bidirectional: bool, bias: bool) -> tuple[str, ...]:
    kinds = _KINDS_WITH_BIAS if bias else _KINDS_WITH_BIAS[:2]
    suffixes = ("", "_reverse") if bidirectional else ("",)
    return tuple(f"{kind}_l{layer}{suffix}" for layer in range(num_layers) for suffix in suffixes for kind in kinds)


def param_names(num_layers: int, bidirectional: bool, bias: bool) -> list[str]:
    """PyTorch's parameter order: per layer, per direction, weight_ih, weight_hh, bias_ih, bias_hh."""
    # Cached: every compiled call lists the weights in this order.
    return list(_names(int(num_layers), bool(bidirectional), bool(bias)))


def param_shapes(cell: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                 bias: bool) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every parameter, in param_names order (see the module doc)."""
    rows = gate_count(cell) * hidden_size
    directions = 2 if bidirectional else 1
    shapes = {}
    for name in param_names(num_layers, bidirectional, bias):
        layer = int(name.split("_l")[1].split("_")[0])
        width = input_size if layer == 0 else directions * hidden_size
        if name.startswith("weight_ih"):
            shapes[name] = (rows, width)
        elif name.startswith("weight_hh"):
            shapes[name] = (rows, hidden_size)
        else:
            shapes[name] = (rows,)
    return shapes


def config_shapes(config) -> dict[str, tuple[int, ...]]:
    """param_shapes of a ModelConfig (rnncore._core.ModelConfig or anything with its fields)."""
    return param_shapes(config.cell, config.input_size, config.hidden_size, config.num_layers,
                        config.bidirectional, config.bias)


def parameter_count(gates: int, input_size: int, hidden_size: int, num_layers: int, bias: bool,
                    bidirectional: bool) -> int:
    """The number of values param_shapes lists, in closed form (num_layers may be huge)."""
    directions = 2 if bidirectional else 1
    rows = gates * hidden_size
    biases = 2 * rows if bias else 0
    first = rows * (input_size + hidden_size) + biases
    upper = rows * (directions * hidden_size + hidden_size) + biases
    return directions * (first + (num_layers - 1) * upper)

"""Linear and Embedding layers in NumPy, plus parameter counts of the recurrent layers.

The layers follow the rnncore protocol: ``forward`` returns the output and an opaque cache,
``backward(cache, grad_output)`` returns gradients, ``__call__`` is inference only.
Parameter names, shapes and initialisation are PyTorch's, so weights move between the two
unchanged (``load_state_dict(torch_module.state_dict())`` works with CPU tensors).

Parameters live in one dict per layer (``parameters()``); optimizers update those arrays in
place, and ``load_state_dict`` copies into them, so a reference taken once stays valid.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .._checks import (
    boolean,
    describe,
    exact_shape,
    float_dtype,
    optional_seed,
    positive_int,
    real_array,
)
from .. import _spec
from .._spec import FAMILY_GATES
from .losses import _checked_indices

__all__ = ["Linear", "Embedding", "parameter_count", "parameter_table", "ParameterRow"]


class _ParameterLayer:
    """What Linear and Embedding share: a live parameter dict, state_dict I/O, counting."""

    _params: dict[str, np.ndarray]
    dtype: np.dtype
    # Bumped by load_state_dict; a cache made before a reload is refused by backward.
    _version: int = 0

    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter dict ``{name: ndarray}``.

        The arrays are the layer's own storage: an optimizer that updates them in place
        updates the layer. Write into the arrays (or use ``load_state_dict``); do not replace
        dict entries, or an optimizer built earlier keeps updating the old arrays.
        """
        return self._params

    def num_parameters(self) -> int:
        """The number of scalar parameters."""
        return sum(int(p.size) for p in self._params.values())

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, ``{name: ndarray}`` (names and shapes as in PyTorch)."""
        return {name: p.copy() for name, p in self._params.items()}

    def load_state_dict(self, state_dict: Mapping[str, ArrayLike]) -> None:
        """Copy ``state_dict`` into the parameters, strictly.

        It must have exactly the keys of ``state_dict()``, each value anything ``np.asarray``
        takes (a torch tensor too) with exactly the parameter's shape; values are cast to the
        layer's dtype. A missing, unexpected or misshaped key raises ``ValueError`` naming it;
        a value of a non-real dtype raises ``TypeError``. Everything is checked before anything
        is written, so a failed load changes nothing. The arrays keep their identity (values
        are copied in), so an optimizer holding them stays attached.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                f"state_dict: expected a mapping of name to array, got {describe(state_dict)}"
            )
        keys = f"expected keys {sorted(self._params)}, got {sorted(map(str, state_dict))}"
        for key, param in self._params.items():
            if key not in state_dict:
                raise ValueError(
                    f"state_dict: missing key {key!r} (shape {param.shape}); {keys}"
                )
        for key in state_dict:
            if key not in self._params:
                raise ValueError(f"state_dict: unexpected key {key!r}; {keys}")
        staged = {}
        for key, param in self._params.items():
            value = real_array(f"state_dict[{key!r}]", state_dict[key], self.dtype)
            exact_shape(f"state_dict[{key!r}]", value, param.shape)
            staged[key] = value
        for key, value in staged.items():
            self._params[key][...] = value
        self._version += 1

    def _check_cache(self, cache: Any, cache_type: type) -> None:
        if not isinstance(cache, cache_type):
            raise TypeError(
                f"cache: expected the {cache_type.__name__} of forward, got {describe(cache)}"
            )
        if cache.layer is not self:
            raise ValueError(
                f"cache: expected one from this layer's forward, got another "
                f"{type(self).__name__}'s"
            )
        if cache.version != self._version:
            raise ValueError(
                "cache: the parameters were reloaded after the forward call that made it; "
                "run forward again"
            )


@dataclass(frozen=True, eq=False)
class LinearCache:
    """What ``Linear.backward`` needs from ``Linear.forward``: the layer and its input."""

    layer: "Linear"
    version: int
    x: np.ndarray


class Linear(_ParameterLayer):
    """A fully connected layer ``y = x @ weight.T + bias``, PyTorch's ``nn.Linear``.

    Args:
        in_features: size I of the last axis of the input (int >= 1).
        out_features: size O of the last axis of the output (int >= 1).
        bias: whether the layer has a bias.
        dtype: float32 or float64; parameters, outputs and gradients have this dtype.
        seed: None (fresh entropy) or an int >= 0, for the initialisation.

    Parameters (``parameters()``):
        ``weight`` (O, I) and, with ``bias=True``, ``bias`` (O,), both drawn from
        U(-1/sqrt(I), 1/sqrt(I)) — what PyTorch's kaiming_uniform_(a=sqrt(5)) default gives.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: DTypeLike = np.float32,
        seed: int | None = None,
    ) -> None:
        self.in_features = positive_int("in_features", in_features)
        self.out_features = positive_int("out_features", out_features)
        self.has_bias = boolean("bias", bias)
        self.dtype = float_dtype("dtype", dtype)
        rng = np.random.default_rng(optional_seed("seed", seed))
        bound = 1.0 / math.sqrt(self.in_features)
        shape = (self.out_features, self.in_features)
        self._params = {"weight": rng.uniform(-bound, bound, shape).astype(self.dtype)}
        if self.has_bias:
            self._params["bias"] = rng.uniform(-bound, bound, self.out_features).astype(self.dtype)

    @property
    def weight(self) -> np.ndarray:
        """The live weight, shape (out_features, in_features)."""
        return self._params["weight"]

    @property
    def bias(self) -> np.ndarray | None:
        """The live bias, shape (out_features,), or None for ``bias=False``."""
        return self._params.get("bias")

    def __repr__(self) -> str:
        return (
            f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.has_bias}, dtype={self.dtype.name})"
        )

    def _input(self, x: ArrayLike) -> np.ndarray:
        array = real_array("x", x, self.dtype)
        if array.ndim == 0 or array.shape[-1] != self.in_features:
            raise ValueError(f"x: expected shape (..., {self.in_features}), got {array.shape}")
        return array

    def _apply(self, x: np.ndarray) -> np.ndarray:
        # One GEMM over all leading axes, whatever their number.
        rows = x.reshape(-1, self.in_features)
        y = rows @ self.weight.T
        if self.has_bias:
            y += self.bias
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def forward(self, x: ArrayLike) -> tuple[np.ndarray, LinearCache]:
        """Run the layer and keep what ``backward`` needs.

        Args:
            x: (..., in_features), real numbers; cast to the layer's dtype.
        Returns:
            ``(y, cache)``: y of shape (..., out_features); cache for ``backward``. The cache
            holds ``x`` by reference and ``backward`` reads the weight as it is then: do not
            modify ``x`` or step the optimizer between ``forward`` and ``backward``
            (``load_state_dict`` in between makes ``backward`` refuse the cache).
        """
        x = self._input(x)
        return self._apply(x), LinearCache(self, self._version, x)

    def __call__(self, x: ArrayLike) -> np.ndarray:
        """Inference: ``y`` of shape (..., out_features) for ``x`` of shape (..., in_features)."""
        return self._apply(self._input(x))

    def backward(
        self, cache: LinearCache, grad_y: ArrayLike
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Gradients of a loss L given ``grad_y = dL/dy``.

        Args:
            cache: what ``forward`` returned with this layer.
            grad_y: dL/dy, exactly the shape of ``y``, (..., out_features).
        Returns:
            ``(grad_x, grads)``: grad_x = dL/dx with the shape of ``x``; grads =
            ``{"weight": (O, I), "bias": (O,)}`` (no "bias" when ``bias=False``), the keys of
            ``parameters()``. Gradients are summed over all leading axes of ``x``.
        """
        self._check_cache(cache, LinearCache)
        x = cache.x
        grad_y = real_array("grad_y", grad_y, self.dtype)
        exact_shape("grad_y", grad_y, x.shape[:-1] + (self.out_features,))
        grad_rows = grad_y.reshape(-1, self.out_features)
        x_rows = x.reshape(-1, self.in_features)
        grad_x = (grad_rows @ self.weight).reshape(x.shape)
        grads = {"weight": grad_rows.T @ x_rows}
        if self.has_bias:
            grads["bias"] = grad_rows.sum(axis=0)
        return grad_x, grads


@dataclass(frozen=True, eq=False)
class EmbeddingCache:
    """What ``Embedding.backward`` needs from ``Embedding.forward``: the layer and indices."""

    layer: "Embedding"
    version: int
    indices: np.ndarray


class Embedding(_ParameterLayer):
    """A lookup table ``y = weight[indices]``, PyTorch's ``nn.Embedding``.

    Args:
        num_embeddings: number of rows V (vocabulary size, int >= 1).
        embedding_dim: size E of each row (int >= 1).
        dtype: float32 or float64.
        seed: None (fresh entropy) or an int >= 0, for the initialisation.
        padding_idx: None, or a row index in [-V, V) (negative counts from the end, as in
            PyTorch) whose row starts at zero and never receives a gradient.

    Parameters (``parameters()``):
        ``weight`` (V, E), drawn from N(0, 1) like PyTorch (the padding row zeroed).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        dtype: DTypeLike = np.float32,
        seed: int | None = None,
        padding_idx: int | None = None,
    ) -> None:
        self.num_embeddings = positive_int("num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.dtype = float_dtype("dtype", dtype)
        if padding_idx is not None:
            if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, numbers.Integral):
                raise TypeError(f"padding_idx: expected None or an int, got {describe(padding_idx)}")
            padding_idx = int(padding_idx)
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(
                    f"padding_idx: expected None or an int in [{-self.num_embeddings}, "
                    f"{self.num_embeddings}) (num_embeddings), got {padding_idx}"
                )
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        rng = np.random.default_rng(optional_seed("seed", seed))
        weight = rng.standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            weight[padding_idx] = 0.0
        self._params = {"weight": weight.astype(self.dtype)}

    @property
    def weight(self) -> np.ndarray:
        """The live table, shape (num_embeddings, embedding_dim)."""
        return self._params["weight"]

    def __repr__(self) -> str:
        padding = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return (
            f"Embedding({self.num_embeddings}, {self.embedding_dim}, "
            f"dtype={self.dtype.name}{padding})"
        )

    def _indices(self, indices: ArrayLike) -> np.ndarray:
        return _checked_indices("indices", indices, self.num_embeddings, "num_embeddings")

    def forward(self, indices: ArrayLike) -> tuple[np.ndarray, EmbeddingCache]:
        """Look rows up and keep the indices for ``backward``.

        Args:
            indices: integers of any shape S (a scalar too), each in [0, num_embeddings).
                Float or bool indices raise ``TypeError``; out-of-range ones ``ValueError``.
        Returns:
            ``(y, cache)``: y of shape S + (embedding_dim,), a copy of the rows.
        """
        indices = self._indices(indices)
        return self.weight[indices], EmbeddingCache(self, self._version, indices)

    def __call__(self, indices: ArrayLike) -> np.ndarray:
        """Inference: the rows for ``indices``, shape S + (embedding_dim,)."""
        return self.weight[self._indices(indices)]

    def backward(self, cache: EmbeddingCache, grad_y: ArrayLike) -> dict[str, np.ndarray]:
        """The weight gradient for ``grad_y = dL/dy`` (shape S + (embedding_dim,)).

        Returns ``{"weight": (num_embeddings, embedding_dim)}``: row v is the sum of grad_y
        over every position that looked v up (zero for unused rows and for ``padding_idx``).
        Indices have no gradient, so unlike ``Linear.backward`` only the dict is returned.
        """
        self._check_cache(cache, EmbeddingCache)
        indices = cache.indices
        grad_y = real_array("grad_y", grad_y, self.dtype)
        exact_shape("grad_y", grad_y, indices.shape + (self.embedding_dim,))
        grad_weight = np.zeros_like(self.weight)
        # np.add.at, not fancy-index +=, so that repeated indices accumulate.
        np.add.at(grad_weight, indices.reshape(-1), grad_y.reshape(-1, self.embedding_dim))
        if self.padding_idx is not None:
            grad_weight[self.padding_idx] = 0.0
        return {"weight": grad_weight}


_GATES = FAMILY_GATES


def parameter_count(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
) -> int:
    """The exact number of parameters of a PyTorch-layout RNN / LSTM / GRU.

    Each layer and direction holds ``weight_ih`` (G*H, I_k), ``weight_hh`` (G*H, H) and, with
    bias, ``bias_ih`` and ``bias_hh`` (G*H,): ``G*H*(I_k + H) + 2*G*H`` parameters, where
    G = 1 (rnn), 4 (lstm), 3 (gru), I_0 = input_size and I_k = D*H for k > 0 (D = 2 when
    bidirectional, else 1).

    Args:
        kind: "rnn", "lstm" or "gru" (case-insensitive).
        input_size, hidden_size, num_layers: ints >= 1.
        bias, bidirectional: bools.
    """
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected one of {tuple(_GATES)}, got {describe(kind)}")
    if kind.lower() not in _GATES:
        raise ValueError(f"kind: expected one of {tuple(_GATES)}, got {kind!r}")
    gates = _GATES[kind.lower()]
    input_size = positive_int("input_size", input_size)
    hidden_size = positive_int("hidden_size", hidden_size)
    num_layers = positive_int("num_layers", num_layers)
    bias = boolean("bias", bias)
    bidirectional = boolean("bidirectional", bidirectional)
    return _spec.parameter_count(gates, input_size, hidden_size, num_layers, bias, bidirectional)


class ParameterRow(NamedTuple):
    """One row of ``parameter_table``."""

    kind: str
    hidden_size: int
    count: int


def parameter_table(
    hidden_sizes: Any, input_size: int | None = None
) -> list[ParameterRow]:
    """Parameter counts of one-layer RNN, LSTM and GRU for several hidden sizes.

    The textbook comparison: for input_size = H the counts are G*(2H^2 + 2H), i.e. RNN ~ 2n^2,
    LSTM ~ 4x and GRU ~ 3x that.

    Args:
        hidden_sizes: an iterable of ints >= 1.
        input_size: int >= 1, or None to use each row's hidden size.
    Returns:
        ``[ParameterRow(kind, hidden_size, count), ...]``: for each hidden size in the given
        order, the rows for "rnn", "lstm", "gru". Rows are plain tuples too.
    """
    if isinstance(hidden_sizes, (str, bytes)) or not hasattr(hidden_sizes, "__iter__"):
        raise TypeError(f"hidden_sizes: expected an iterable of ints, got {describe(hidden_sizes)}")
    if input_size is not None:
        input_size = positive_int("input_size", input_size)
    rows = []
    for position, hidden_size in enumerate(hidden_sizes):
        hidden_size = positive_int(f"hidden_sizes[{position}]", hidden_size)
        for kind in _GATES:
            count = parameter_count(kind, input_size or hidden_size, hidden_size)
            rows.append(ParameterRow(kind, hidden_size, count))
    return rows


# --------------------------------------------------------------------------- Attention
from .._checks import to_numpy  # noqa: E402 - this section's own import, kept with it

__all__ += ["Attention"]

ATTENTION_SCORES = ("dot", "additive")


@dataclass(frozen=True, eq=False)
class AttentionCache:
    """What ``Attention.backward`` needs from ``Attention.forward`` (batch-major arrays)."""

    layer: "Attention"
    version: int
    unbatched: bool
    query: np.ndarray  # (N, Tq, Q)
    keys: np.ndarray  # (N, Ts, K)
    weights: np.ndarray  # (N, Tq, Ts), the softmax
    energies: np.ndarray | None  # (N, Tq, Ts, A): tanh(...) of the additive score


class Attention(_ParameterLayer):
    """Attention of queries over a sequence of keys: ``context = sum_s softmax_s(score) * key_s``.

    The keys are also the values (an RNN encoder's outputs, as in Bahdanau et al. 2015 and
    Luong et al. 2015). For each query q and key k_s the score is

    * ``"dot"`` (Luong's dot score): ``q . k_s``; no parameters, query_size must equal key_size;
    * ``"additive"`` (Bahdanau's): ``v . tanh(W_query q + W_key k_s)``, parameters
      ``query_weight`` (A, Q), ``key_weight`` (A, K) and ``score_weight`` (A,), each drawn
      from U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as ``Linear`` does (fan_in of v is A).

    Layouts are time-major as in the recurrent layers: keys (Ts, N, K); queries either one per
    sequence, (N, Q) (a decoder step), or a sequence of them, (Tq, N, Q) (a decoder run with
    teacher forcing). ``lengths`` (N,) masks the keys of sequence n from lengths[n] on: they
    get weight exactly 0.

    Args:
        query_size: Q (int >= 1).
        key_size: K (int >= 1).
        score: "dot" or "additive".
        attention_size: A, the width of the additive score (default: key_size); only for
            "additive".
        dtype: float32 or float64.
        seed: None (fresh entropy) or an int >= 0, for the initialisation.
    """

    def __init__(
        self,
        query_size: int,
        key_size: int,
        score: str = "dot",
        attention_size: int | None = None,
        dtype: DTypeLike = np.float32,
        seed: int | None = None,
    ) -> None:
        self.query_size = positive_int("query_size", query_size)
        self.key_size = positive_int("key_size", key_size)
        if not isinstance(score, str) or score not in ATTENTION_SCORES:
            raise ValueError(f"score: expected one of {ATTENTION_SCORES}, got {score!r}")
        self.score = score
        self.dtype = float_dtype("dtype", dtype)
        if score == "dot":
            if attention_size is not None:
                raise ValueError(f"attention_size: the dot score has none, got {attention_size!r}")
            if self.query_size != self.key_size:
                raise ValueError(
                    f"query_size: the dot score needs query_size == key_size ({self.key_size}), "
                    f"got {self.query_size}")
            self.attention_size = None
            self._params = {}
            return
        self.attention_size = positive_int(
            "attention_size", self.key_size if attention_size is None else attention_size)
        rng = np.random.default_rng(optional_seed("seed", seed))
        shapes = {"query_weight": (self.attention_size, self.query_size),
                  "key_weight": (self.attention_size, self.key_size),
                  "score_weight": (self.attention_size,)}
        self._params = {}
        for name, shape in shapes.items():
            bound = 1.0 / math.sqrt(shape[-1])
            self._params[name] = rng.uniform(-bound, bound, shape).astype(self.dtype)

    def __repr__(self) -> str:
        size = "" if self.score == "dot" else f", attention_size={self.attention_size}"
        return (f"Attention(query_size={self.query_size}, key_size={self.key_size}, "
                f"score={self.score!r}{size}, dtype={self.dtype.name})")

    # ------------------------------------------------------------------ inputs
    def _inputs(self, query: ArrayLike, keys: ArrayLike, lengths: Any):
        query = real_array("query", query, self.dtype)
        keys = real_array("keys", keys, self.dtype)
        if keys.ndim != 3 or keys.shape[2] != self.key_size or 0 in keys.shape:
            raise ValueError(
                f"keys: expected shape (Ts, N, {self.key_size}) with Ts, N >= 1, got {keys.shape}")
        steps, batch = keys.shape[:2]
        unbatched = query.ndim == 2
        if query.ndim not in (2, 3) or query.shape[-1] != self.query_size or query.shape[-2] != batch \
                or query.shape[0] == 0:
            raise ValueError(
                f"query: expected shape ({batch}, {self.query_size}) or (Tq, {batch}, "
                f"{self.query_size}) (N = {batch} from keys), got {query.shape}")
        query_b = query[:, None, :] if unbatched else query.transpose(1, 0, 2)
        return query_b, keys.transpose(1, 0, 2), self._lengths(lengths, steps, batch), unbatched

    @staticmethod
    def _lengths(lengths: Any, steps: int, batch: int) -> np.ndarray | None:
        if lengths is None:
            return None
        array = to_numpy("lengths", lengths)
        if array.dtype.kind not in "iu":
            raise TypeError(f"lengths: expected integers, got dtype {array.dtype}")
        if array.shape != (batch,):
            raise ValueError(f"lengths: expected shape ({batch},), one per sequence, got {array.shape}")
        if array.min() < 1 or array.max() > steps:
            raise ValueError(f"lengths: expected every length in 1..{steps} (the keys' steps), "
                             f"got {array.min() if array.min() < 1 else array.max()}")
        return array.astype(np.intp)

    # ------------------------------------------------------------------ forward
    def _scores(self, query_b: np.ndarray, keys_b: np.ndarray):
        if self.score == "dot":
            return query_b @ keys_b.transpose(0, 2, 1), None
        projected_query = query_b @ self._params["query_weight"].T  # (N, Tq, A)
        projected_keys = keys_b @ self._params["key_weight"].T  # (N, Ts, A)
        energies = np.tanh(projected_query[:, :, None, :] + projected_keys[:, None, :, :])
        return energies @ self._params["score_weight"], energies

    def _run(self, query: ArrayLike, keys: ArrayLike, lengths: Any):
        query_b, keys_b, lengths, unbatched = self._inputs(query, keys, lengths)
        scores, energies = self._scores(query_b, keys_b)
        if lengths is not None:
            beyond = np.arange(keys_b.shape[1])[None, :] >= lengths[:, None]  # (N, Ts)
            scores[np.broadcast_to(beyond[:, None, :], scores.shape)] = -np.inf
        scores -= scores.max(axis=-1, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=-1, keepdims=True)
        context_b = weights @ keys_b  # (N, Tq, K)
        if unbatched:
            context, user_weights = context_b[:, 0], weights[:, 0]
        else:
            context, user_weights = context_b.transpose(1, 0, 2), weights.transpose(1, 0, 2)
        cache = AttentionCache(self, self._version, unbatched, query_b, keys_b, weights, energies)
        return context, user_weights, cache

    def forward(self, query: ArrayLike, keys: ArrayLike, lengths: Any = None):
        """Attend and keep what ``backward`` needs.

        Args:
            query: (N, Q) or (Tq, N, Q).
            keys: (Ts, N, K), the values too.
            lengths: None, or (N,) integers in 1..Ts: the keys of sequence n from lengths[n]
                on are masked out.
        Returns:
            ``(context, weights, cache)``: context (N, K) or (Tq, N, K); weights, the
            attention distribution over the keys, (N, Ts) or (Tq, N, Ts), each row summing
            to 1. The cache holds the inputs by reference: do not change them before
            ``backward``.
        """
        return self._run(query, keys, lengths)

    def __call__(self, query: ArrayLike, keys: ArrayLike, lengths: Any = None):
        """Inference: ``(context, weights)`` as ``forward`` returns them."""
        context, weights, _ = self._run(query, keys, lengths)
        return context, weights

    # ------------------------------------------------------------------ backward
    def backward(self, cache: AttentionCache, grad_context: ArrayLike):
        """Gradients of a loss L given ``grad_context = dL/dcontext`` (the context's shape).

        The weights are returned for inspection; a loss that depends on them other than
        through the context is not supported.

        Returns:
            ``(grad_query, grad_keys, grads)``: dL/dquery and dL/dkeys in the inputs' shapes,
            and ``{name: dL/dparam}`` with the keys of ``parameters()`` (empty for "dot").
        """
        self._check_cache(cache, AttentionCache)
        query_b, keys_b, weights = cache.query, cache.keys, cache.weights
        batch, queries = query_b.shape[:2]
        grad = real_array("grad_context", grad_context, self.dtype)
        expected = (batch, self.key_size) if cache.unbatched else (queries, batch, self.key_size)
        exact_shape("grad_context", grad, expected, "(the shape of the context)")
        grad_b = grad[:, None, :] if cache.unbatched else grad.transpose(1, 0, 2)
        grad_keys_b = weights.transpose(0, 2, 1) @ grad_b  # through the values
        grad_weights = grad_b @ keys_b.transpose(0, 2, 1)  # (N, Tq, Ts)
        # Softmax backward; masked keys have weight 0, so their score gradient is 0 too.
        grad_scores = weights * (grad_weights - (grad_weights * weights).sum(axis=-1, keepdims=True))
        grads: dict[str, np.ndarray] = {}
        if self.score == "dot":
            grad_query_b = grad_scores @ keys_b
            grad_keys_b += grad_scores.transpose(0, 2, 1) @ query_b
        else:
            grad_query_b, grad_keys_more, grads = self._additive_backward(cache, grad_scores)
            grad_keys_b += grad_keys_more
        if cache.unbatched:
            grad_query = grad_query_b[:, 0]
        else:
            grad_query = np.ascontiguousarray(grad_query_b.transpose(1, 0, 2))
        return grad_query, np.ascontiguousarray(grad_keys_b.transpose(1, 0, 2)), grads

    def _additive_backward(self, cache: AttentionCache, grad_scores: np.ndarray):
        energies = cache.energies
        # d score / d (pre-tanh) = v * (1 - tanh^2), for every (query, key) pair.
        grad_pre = grad_scores[..., None] * self._params["score_weight"] * (1 - energies * energies)
        grad_projected_query = grad_pre.sum(axis=2)  # (N, Tq, A)
        grad_projected_keys = grad_pre.sum(axis=1)  # (N, Ts, A)
        size = self.attention_size
        grads = {
            "query_weight": grad_projected_query.reshape(-1, size).T @ cache.query.reshape(-1, self.query_size),
            "key_weight": grad_projected_keys.reshape(-1, size).T @ cache.keys.reshape(-1, self.key_size),
            "score_weight": np.einsum("nts,ntsa->a", grad_scores, energies).astype(self.dtype, copy=False),
        }
        grad_query_b = grad_projected_query @ self._params["query_weight"]
        grad_keys_b = grad_projected_keys @ self._params["key_weight"]
        return grad_query_b, grad_keys_b, grads

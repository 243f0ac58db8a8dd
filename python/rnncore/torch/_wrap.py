"""rt.from_module: an rnncore.RNN / LSTM / GRU seen as an rnncore.torch layer, sharing its weights."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import rnncore
from rnncore.torch._modules import GRU, LSTM, RNN


def from_module(model: Any) -> nn.RNNBase:
    """An rt.RNN / LSTM / GRU whose parameters are the arrays of `model` (an rnncore.RNN, LSTM or
    GRU): no copy, so an optimizer step on either is seen by both. Dropout 0, train mode."""
    kinds = {rnncore.LSTM: LSTM, rnncore.GRU: GRU, rnncore.RNN: RNN}
    kind = kinds.get(type(model))
    if kind is None:
        raise TypeError(f"model: expected an rnncore.RNN, LSTM or GRU, got {type(model).__name__}")
    kwargs = dict(num_layers=model.num_layers, bias=model.bias, batch_first=model.batch_first,
                  bidirectional=model.bidirectional, dtype=torch.float32 if model.dtype == "float32" else torch.float64)
    if kind is RNN:
        kwargs["nonlinearity"] = model.nonlinearity
    layer = kind(model.input_size, model.hidden_size, **kwargs)
    arrays = model.parameters()
    for name in layer._flat_weights_names:
        setattr(layer, name, nn.Parameter(torch.from_numpy(arrays[name])))
    layer._init_flat_weights()
    return layer

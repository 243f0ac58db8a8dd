"""rnncore's kernels as drop-in torch.nn recurrent layers: ``import rnncore.torch as rt``.

    model.rnn = rt.LSTM(128, 256, num_layers=2, dropout=0.1)   # instead of torch.nn.LSTM

rt.RNN, rt.LSTM and rt.GRU subclass torch.nn.RNN / LSTM / GRU (same constructor, parameters,
state_dict, forward contract, PackedSequence); forward and BPTT run in rnncore's C++ kernels
through the custom operators rnncore::rnn_forward / rnn_backward (torch.compile traces them).
CPU, float32 and float64; proj_size > 0 and double backward raise. Requires torch
(``pip install "rnncore[torch]"``); ``import rnncore`` alone never imports torch.
"""

from __future__ import annotations

from rnncore.torch._modules import GRU, LSTM, RNN
from rnncore.torch._wrap import from_module

__all__ = ["RNN", "LSTM", "GRU", "from_module"]

"""The CUDA kernels against torch.nn on a CUDA device (cuDNN, float64): check_cpp_api.py's grid
and protocol with its NumPy reference swapped for torch, run with the CUDA driver:

    python check_cuda_torch.py --driver BUILD/tests/cpp/cuda_api_check --workdir DIR [--quick]

Outputs, final states and every gradient (input, initial states, each weight and bias), with
check_cpp_api.py's tolerances (float64 1e-10, float32 1e-5 relative to the largest value).
Exit 77 when torch sees no CUDA device.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_cpp_api as base  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover
    print("skipped: no torch")
    sys.exit(77)


def torch_reference(model, x, hx, lengths, grad_y, grad_state):
    """check_cpp_api.reference's results, computed by torch.nn on CUDA in float64."""
    dev = torch.device(os.environ.get("RNNCORE_TORCH_DEVICE", "cuda"))  # "cpu": checks this file itself
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(model.cell, torch.nn.RNN)
    kw = {} if model.cell in ("lstm", "gru") else {"nonlinearity": model.cell.split("_")[1]}
    net = cls(model.input_size, model.hidden_size, num_layers=model.num_layers,
              bidirectional=model.num_directions == 2, bias=model.bias, **kw).to(dev).double()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in model.state_dict().items()})
    t = lambda a: torch.tensor(np.asarray(a, dtype=np.float64), device=dev, requires_grad=True)  # noqa: E731
    xt = t(x)
    lstm = model.cell == "lstm"
    states = None
    if hx is not None:
        states = (t(hx[0]), t(hx[1])) if lstm else t(hx)
    T, N = x.shape[0], x.shape[1]
    if lengths is not None:
        packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False)
        out, state = net(packed, states)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
    else:
        y, state = net(xt, states)
    h_n, c_n = state if lstm else (state, None)
    gy = torch.tensor(np.asarray(grad_y, dtype=np.float64), device=dev)
    gs = grad_state if lstm else (grad_state,)
    loss = (y * gy).sum() + (h_n * torch.tensor(np.asarray(gs[0], dtype=np.float64), device=dev)).sum()
    if lstm:
        loss = loss + (c_n * torch.tensor(np.asarray(gs[1], dtype=np.float64), device=dev)).sum()
    inputs = [xt] + ([] if states is None else list(states if lstm else (states,)))
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(loss, inputs + list(params.values()), allow_unused=True)
    cpu = lambda a: a.detach().cpu().numpy()  # noqa: E731
    out = {"y": cpu(y), "h_n": cpu(h_n)}
    if lstm:
        out["c_n"] = cpu(c_n)
    gout = {"grad_x": cpu(grads[0])}
    n_in = len(inputs)
    if states is not None:
        gout["grad_h0"] = cpu(grads[1])
        if lstm:
            gout["grad_c0"] = cpu(grads[2])
    else:  # no initial state given: the driver still writes grad_h0; give torch explicit zeros
        return _with_zero_state(model, x, lengths, grad_y, grad_state)
    D = model.num_directions
    names = list(params)
    for layer in range(model.num_layers):
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            for k, kind in enumerate(["weight_ih", "weight_hh", "bias_ih", "bias_hh"]):
                if kind + suffix in params:
                    gout[f"grad_param{4 * (layer * D + d) + k}"] = cpu(grads[n_in + names.index(kind + suffix)])
    return out, gout


def _with_zero_state(model, x, lengths, grad_y, grad_state):
    """The driver passes no state (zeros) but still writes grad_h0: give torch explicit zeros."""
    shape = (model.num_layers * model.num_directions, x.shape[1], model.hidden_size)
    zeros = np.zeros(shape)
    hx = (zeros, zeros) if model.cell == "lstm" else zeros
    return torch_reference(model, x, hx, lengths, grad_y, grad_state)


def main() -> int:
    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA device")
        return 77
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    base.reference = torch_reference
    return base.main()


if __name__ == "__main__":
    sys.exit(main())

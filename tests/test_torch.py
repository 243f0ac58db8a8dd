"""rnncore.torch: gradcheck, parity with torch.nn (outputs, states, every gradient; dropout with
injected masks), state_dict round trips, torch.compile, bad inputs, and that importing rnncore
does not import torch."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

import rnncore.torch as rt  # noqa: E402

KINDS = {
    "rnn_tanh": (lambda *a, **k: rt.RNN(*a, nonlinearity="tanh", **k), nn.RNN),
    "rnn_relu": (lambda *a, **k: rt.RNN(*a, nonlinearity="relu", **k), nn.RNN),
    "lstm": (rt.LSTM, nn.LSTM),
    "gru": (rt.GRU, nn.GRU),
}


def _states(kind, layers, batch, hidden, dtype, unbatched=False):
    shape = (layers, hidden) if unbatched else (layers, batch, hidden)
    h = torch.randn(shape, dtype=dtype, requires_grad=True)
    if kind == "lstm":
        return (h, torch.randn(shape, dtype=dtype, requires_grad=True))
    return h


def _flat(state):
    return list(state) if isinstance(state, tuple) else [state]


# ---------------------------------------------------------------- gradcheck
# Every cell x layers x directions x input form; hx given in every other case (CI time).
GRADCHECK = [(*case, i % 2 == 1) for i, case in enumerate(
    itertools.product(KINDS, [1, 2], [False, True], ["plain", "batch_first", "packed", "unbatched"]))]


@pytest.mark.parametrize("kind,layers,bidirectional,form,with_hx", GRADCHECK)
def test_gradcheck_float64(kind, layers, bidirectional, form, with_hx):
    torch.manual_seed(len(kind) * 7 + layers)
    make = KINDS[kind][0]
    m = make(3, 4, num_layers=layers, bidirectional=bidirectional, batch_first=form == "batch_first",
             dtype=torch.float64)
    D = 2 if bidirectional else 1
    T, N = 4, 3
    x = torch.randn((T, 3) if form == "unbatched" else (N, T, 3) if form == "batch_first" else (T, N, 3),
                    dtype=torch.float64, requires_grad=True)
    hx = _states(kind, layers * D, N, 4, torch.float64, unbatched=form == "unbatched") if with_hx else None
    lengths = torch.tensor([2, 4, 3])  # unsorted

    def run(x, *flat_hx_and_params):
        n_hx = len(_flat(hx)) if with_hx else 0
        state = None
        if with_hx:
            state = tuple(flat_hx_and_params[:n_hx]) if kind == "lstm" else flat_hx_and_params[0]
        params = flat_hx_and_params[n_hx:]
        weights = dict(zip(m._flat_weights_names, params))
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if form == "packed" else x
        out, h = torch.func.functional_call(m, weights, (inp, state))
        if form == "packed":
            out = out.data
        return (out, *_flat(h))

    inputs = (x, *(_flat(hx) if with_hx else []), *[p.detach().requires_grad_() for p in m._flat_weights])
    assert torch.autograd.gradcheck(run, inputs, atol=1e-6, rtol=1e-5, fast_mode=True)


# ---------------------------------------------------------------- parity with torch.nn
PARITY = [(*case, i % 2 == 0) for i, case in enumerate(
    itertools.product(KINDS, [torch.float32, torch.float64], [1, 2], [False, True], ["plain", "batch_first", "packed"]))]


def _compare(a, b, dtype, what):
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{what}: {m}")


def _run_both(kind, dtype, layers, bidirectional, form, with_hx, seed=0, **kw):
    torch.manual_seed(seed)
    make, reference = KINDS[kind]
    m = make(5, 8, num_layers=layers, bidirectional=bidirectional, batch_first=form == "batch_first",
             dtype=dtype, **kw)
    t = m.to_torch()
    assert type(t) is reference
    D = 2 if bidirectional else 1
    T, N = 6, 4
    x0 = torch.randn((N, T, 5) if form == "batch_first" else (T, N, 5), dtype=dtype)
    hx0 = _states(kind, layers * D, N, 8, dtype) if with_hx else None
    lengths = torch.tensor([3, 6, 1, 5])
    results = []
    for module in (m, t):
        x = x0.clone().requires_grad_()
        hx = None if hx0 is None else tuple(h.detach().clone().requires_grad_() for h in _flat(hx0))
        state = None if hx is None else (hx if kind == "lstm" else hx[0])
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if form == "packed" else x
        out, h = module(inp, state)
        if form == "packed":
            out = out.data
        g = torch.Generator().manual_seed(1)
        loss = (out * torch.randn(out.shape, generator=g, dtype=dtype)).sum()
        for s in _flat(h):
            loss = loss + (s * torch.randn(s.shape, generator=g, dtype=dtype)).sum()
        loss.backward()
        results.append((out.detach(), [s.detach() for s in _flat(h)], x.grad,
                        [s.grad for s in hx] if hx is not None else [],
                        {n: p.grad for n, p in module.named_parameters()}))
    return results


@pytest.mark.parametrize("kind,dtype,layers,bidirectional,form,with_hx", PARITY)
def test_parity_with_torch_nn(kind, dtype, layers, bidirectional, form, with_hx):
    (out, h, gx, ghx, gp), (out_t, h_t, gx_t, ghx_t, gp_t) = _run_both(kind, dtype, layers, bidirectional,
                                                                        form, with_hx)
    _compare(out, out_t, dtype, "output")
    for a, b in zip(h, h_t):
        _compare(a, b, dtype, "state")
    _compare(gx, gx_t, dtype, "grad input")
    for a, b in zip(ghx, ghx_t):
        _compare(a, b, dtype, "grad hx")
    assert gp.keys() == gp_t.keys()
    for name in gp:
        _compare(gp[name], gp_t[name], dtype, f"grad {name}")


@pytest.mark.parametrize("kind,used", [(k, u) for k in KINDS for u in ("output", "h_n", "c_n")
                                       if u != "c_n" or k == "lstm"])
def test_a_loss_on_some_outputs_only(kind, used):
    """Outputs the loss does not use get no gradient (None reaches the kernels, read as zeros)."""
    torch.manual_seed(0)
    m = KINDS[kind][0](5, 8, num_layers=2, dtype=torch.float64)
    t = m.to_torch()
    x0 = torch.randn(6, 3, 5, dtype=torch.float64)
    grads = []
    for module in (m, t):
        x = x0.clone().requires_grad_()
        out, h = module(x)
        value = {"output": out, "h_n": _flat(h)[0], "c_n": _flat(h)[-1]}[used]
        (value * torch.linspace(-1, 1, value.numel(), dtype=torch.float64).reshape(value.shape)).sum().backward()
        grads.append([x.grad, *[p.grad for p in module.parameters()]])
    for a, b in zip(*grads):
        _compare(a, b, torch.float64, f"grad with a loss on {used}")


class _MaskedStack(nn.Module):
    """torch.nn's layers one at a time with given masks between them: the dropout reference."""

    def __init__(self, rt_module, masks):
        super().__init__()
        self.full = rt_module.to_torch()
        self.masks = masks

    def forward(self, x):
        full, states, h_all = self.full, [], []
        D = 2 if full.bidirectional else 1
        for k in range(full.num_layers):
            layer = type(full)(x.shape[-1], full.hidden_size, bidirectional=full.bidirectional,
                               dtype=x.dtype, **({"nonlinearity": full.nonlinearity} if isinstance(full, nn.RNN) else {}))
            for name in layer._flat_weights_names:
                setattr(layer, name, getattr(full, name.replace("_l0", f"_l{k}")))
            layer._init_flat_weights()
            x, h = layer(x)
            h_all.append(h)
            if k + 1 < full.num_layers:
                x = x * self.masks[k]
        return x, h_all


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_matches_torch_nn_with_the_same_masks(kind, dtype, bidirectional):
    torch.manual_seed(3)
    m = KINDS[kind][0](5, 8, num_layers=3, dropout=0.4, bidirectional=bidirectional, dtype=dtype)
    x = torch.randn(7, 4, 5, dtype=dtype, requires_grad=True)
    torch.manual_seed(11)
    out, _ = m(x)
    # The masks the layer drew: the same generator calls again.
    torch.manual_seed(11)
    D = 2 if bidirectional else 1
    masks = torch.empty((2, 7, 4, D * 8), dtype=dtype).bernoulli_(0.6).div_(0.6)
    ref = _MaskedStack(m, masks)
    out_t, _ = ref(x)
    _compare(out, out_t, dtype, "output")
    g = torch.randn(out.shape, dtype=dtype)
    grads = torch.autograd.grad(out, [x, *m.parameters()], g)
    grads_t = torch.autograd.grad(out_t, [x, *ref.full.parameters()], g)
    for a, b in zip(grads, grads_t):
        _compare(a, b, dtype, "gradient")


def test_dropout_statistics_and_modes():
    torch.manual_seed(0)
    m = rt.GRU(16, 64, num_layers=2, dropout=0.5)
    x = torch.randn(20, 8, 16)
    a, _ = m(x)
    b, _ = m(x)
    assert not torch.equal(a, b)  # fresh masks each call
    m.eval()
    c, _ = m(x)
    d, _ = m(x)
    assert torch.equal(c, d)
    torch.testing.assert_close(c, m.to_torch().eval()(x)[0], rtol=2e-4, atol=2e-5)
    # The top layer sees about half its inputs zeroed (through the masks only).
    ref = _MaskedStack(m, torch.ones(1, 20, 8, 64))
    torch.manual_seed(5)
    m.train()
    out, _ = m(x)
    torch.manual_seed(5)
    masks = torch.empty(1, 20, 8, 64).bernoulli_(0.5).div_(0.5)
    assert 0.45 < float((masks == 0).float().mean()) < 0.55
    ref.masks = masks
    torch.testing.assert_close(out, ref(x)[0], rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------- the module contract
def test_a_drop_in_nn_lstm():
    m = rt.LSTM(4, 6, num_layers=2, dropout=0.2)
    assert isinstance(m, nn.RNNBase) and m.mode == "LSTM"
    t = nn.LSTM(4, 6, num_layers=2, dropout=0.2)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [p.shape for p in m.parameters()] == [p.shape for p in t.parameters()]
    bound = 1 / 6 ** 0.5
    assert all(float(p.detach().abs().max()) <= bound for p in m.parameters())


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trips(kind, tmp_path):
    make, reference = KINDS[kind]
    m = make(3, 5, num_layers=2, bidirectional=True)
    t = reference(3, 5, num_layers=2, bidirectional=True, **({"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}))
    m.load_state_dict(t.state_dict())
    x = torch.randn(4, 2, 3)
    torch.testing.assert_close(m(x)[0], t(x)[0], rtol=2e-4, atol=2e-5)
    t2 = reference(3, 5, num_layers=2, bidirectional=True, **({"nonlinearity": kind[4:]} if kind.startswith("rnn") else {}))
    t2.load_state_dict(m.state_dict())
    torch.save(m.state_dict(), tmp_path / "m.pt")
    m3 = make(3, 5, num_layers=2, bidirectional=True)
    m3.load_state_dict(torch.load(tmp_path / "m.pt"))
    assert torch.equal(m3(x)[0], m(x)[0])
    torch.save(m, tmp_path / "whole.pt")
    m4 = torch.load(tmp_path / "whole.pt", weights_only=False)
    assert type(m4) is type(m) and torch.equal(m4(x)[0], m(x)[0])
    back = type(m).from_torch(t2)
    assert type(back) is type(m) and torch.equal(back(x)[0], m(x)[0])


def test_to_float64_train_eval_hooks_optimizer_and_clip():
    m = rt.LSTM(3, 5).to(torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    seen = []
    m.register_forward_hook(lambda mod, inp, out: seen.append(out[0].shape))
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    before = m.weight_hh_l0.detach().clone()
    out, _ = m(x)
    out.pow(2).sum().backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 0.1)
    opt.step()
    assert seen == [(4, 2, 5)] and not torch.equal(before, m.weight_hh_l0)


def test_weights_changed_between_calls_are_the_ones_used():
    """rt layers keep their weights' NumPy views between calls: every way of changing a weight
    after a call (in place, .data, a new Parameter, another dtype, functional_call, a copy) is
    seen by the next call as torch.nn sees it."""
    import copy
    import pickle

    torch.manual_seed(0)
    m = rt.LSTM(3, 5, num_layers=2)
    t = m.to_torch()
    x = torch.randn(4, 2, 3)

    def same():
        torch.testing.assert_close(m(x)[0], t(x)[0], rtol=2e-4, atol=2e-5)

    same()
    with torch.no_grad():
        for mod in (m, t):
            mod.weight_ih_l0.add_(0.5)  # in place: the same memory
    same()
    new = torch.randn(20, 5)
    for mod in (m, t):
        mod.weight_hh_l1.data = new.clone()  # another tensor's memory under the same Parameter
    same()
    m.bias_ih_l0 = nn.Parameter(torch.randn(20))  # a new Parameter
    t.bias_ih_l0 = nn.Parameter(m.bias_ih_l0.detach().clone())
    same()
    swapped = {"weight_hh_l0": torch.randn(20, 5)}
    torch.testing.assert_close(torch.func.functional_call(m, swapped, (x,))[0],
                               torch.func.functional_call(t, swapped, (x,))[0], rtol=2e-4, atol=2e-5)
    same()  # and back to the module's own weights
    # A copy (deepcopy, pickle) holds its own weights and no views of the original's memory.
    twin = copy.deepcopy(m)
    assert "_kernel_views" not in m.__getstate__()
    with torch.no_grad():
        twin.weight_hh_l0.zero_()
    same()
    assert not torch.equal(twin(x)[0], m(x)[0])
    thawed = pickle.loads(pickle.dumps(m))
    torch.testing.assert_close(thawed(x)[0], m(x)[0], rtol=0, atol=0)
    # A weight made float16 after a call is refused, as at construction.
    m.weight_ih_l1.data = m.weight_ih_l1.data.half()
    with pytest.raises(TypeError, match="weight_ih_l1: rnncore.torch runs float32 and float64"):
        m(x)


def test_from_module_shares_the_weights():
    import numpy as np

    import rnncore as rc

    model = rc.GRU(3, 5, num_layers=2, seed=1)
    layer = rt.from_module(model)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    torch.testing.assert_close(layer(torch.from_numpy(x))[0], torch.from_numpy(model(x)[0]))
    with torch.no_grad():
        layer.weight_hh_l1.mul_(0.5)
    torch.testing.assert_close(layer(torch.from_numpy(x))[0], torch.from_numpy(model(x)[0]))


def test_frozen_weights_and_input_without_grad():
    torch.manual_seed(0)
    m = rt.LSTM(3, 5, num_layers=2)
    t = m.to_torch()
    for mod in (m, t):
        mod.weight_ih_l0.requires_grad_(False)
    x = torch.randn(4, 2, 3)
    m(x)[0].sum().backward()
    t(x)[0].sum().backward()
    assert m.weight_ih_l0.grad is None
    for name, p in m.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, t.get_parameter(name).grad, rtol=2e-4, atol=2e-5)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0], t(x)[0], rtol=2e-4, atol=2e-5)


# ---------------------------------------------------------------- torch.compile
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, inside inductor
@pytest.mark.parametrize("kind,backend", [("lstm", "inductor"), ("gru", "aot_eager")])
def test_torch_compile_matches_eager(kind, backend):
    torch._dynamo.reset()
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 6)
            self.rnn = KINDS[kind][0](6, 8, num_layers=2, batch_first=True)
            self.out = nn.Linear(8, 11)

        def forward(self, tokens):
            return self.out(self.rnn(self.emb(tokens))[0])

    eager = Model()
    compiled_model = Model()
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, fullgraph=True, backend=backend)
    tokens = torch.randint(0, 11, (3, 7))
    results = []
    # No compiled graphs from caches on disk: one made before a change of the ops' schema fails.
    no_caches = (torch._inductor.config.patch(fx_graph_cache=False),
                 torch._functorch.config.patch(enable_autograd_cache=False))
    with no_caches[0], no_caches[1]:
        for model in (eager, compiled):
            loss = model(tokens).logsumexp(-1).sum()
            loss.backward()
            results.append((loss.detach(), {n: p.grad for n, p in (compiled_model if model is compiled else model).named_parameters()}))
    torch.testing.assert_close(results[0][0], results[1][0])
    for name, g in results[0][1].items():
        torch.testing.assert_close(results[1][1][name], g, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------- errors
def test_unsupported_features_raise():
    with pytest.raises(NotImplementedError, match="proj_size"):
        rt.LSTM(3, 5, proj_size=2)
    with pytest.raises(TypeError, match="float32 and float64"):
        rt.GRU(3, 5, dtype=torch.float16)
    m = rt.LSTM(3, 5, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    out, _ = m(x)
    with pytest.raises(NotImplementedError, match="double backward"):
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        g.sum().backward()


def test_bad_inputs_get_clear_errors():
    m = rt.LSTM(3, 5, num_layers=2)
    x = torch.randn(4, 2, 3)
    with pytest.raises(TypeError, match="input: expected dtype torch.float32"):
        m(x.double())
    with pytest.raises(ValueError, match="input_size 3"):
        m(torch.randn(4, 2, 4))
    with pytest.raises(ValueError, match="3 dimensions"):
        m(torch.randn(4, 2, 3, 1))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h0\): expected hidden size \(2, 2, 5\)"):
        m(x, (torch.zeros(1, 2, 5), torch.zeros(2, 2, 5)))
    with pytest.raises(TypeError, match="tuple"):
        m(x, torch.zeros(2, 2, 5))
    with pytest.raises(TypeError, match=r"hx\[1\] \(c0\): expected dtype"):
        m(x, (torch.zeros(2, 2, 5), torch.zeros(2, 2, 5, dtype=torch.float64)))
    with pytest.raises(TypeError, match="lengths: expected an integer tensor without requires_grad"):
        m(x, lengths=torch.tensor([4.0, 2.0], requires_grad=True))
    with pytest.raises(ValueError, match=r"lengths: expected every length in 1..4"):
        m(x, lengths=torch.tensor([5, 2]))
    with pytest.raises(ValueError, match="one step and one sequence"):
        m(torch.randn(0, 2, 3))
    meta = torch.randn(4, 2, 3, device="meta")
    with pytest.raises(ValueError, match="CPU"):
        m(meta)


def test_non_contiguous_input_and_state_are_taken_as_torch_does():
    torch.manual_seed(0)
    m = rt.GRU(3, 5)
    t = m.to_torch()
    x = torch.randn(2, 4, 3).transpose(0, 1)
    h = torch.randn(5, 2, 1).permute(2, 1, 0)
    assert not x.is_contiguous() and not h.is_contiguous()
    torch.testing.assert_close(m(x, h)[0], t(x, h)[0], rtol=2e-4, atol=2e-5)


def test_padded_input_with_lengths_equals_a_packed_sequence():
    torch.manual_seed(0)
    m = rt.LSTM(3, 5, bidirectional=True)
    x = torch.randn(6, 3, 3)
    lengths = torch.tensor([2, 6, 4])
    out, (h, c) = m(x, lengths=lengths)
    packed, (hp, cp) = m(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(packed, total_length=6)
    torch.testing.assert_close(out, padded)
    torch.testing.assert_close(h, hp)


# ---------------------------------------------------------------- imports and threads
def test_importing_rnncore_does_not_import_torch():
    code = "import sys, rnncore, rnncore.nn, rnncore.layers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("first", ["torch", "rnncore"])
def test_one_openmp_runtime_whatever_imports_first(first):
    """rnncore and torch share one libgomp (one thread pool, one thread count): no two pools
    competing for the cores. torch.set_num_threads then sets rnncore's threads too."""
    code = (f"import {first}; import torch, rnncore, rnncore.torch; "
            "paths = {l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l}; "
            "torch.set_num_threads(1); a = rnncore.get_num_threads(); "
            "print(len(paths), a)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_the_custom_ops_pass_opcheck():
    """Schema, fake implementation and autograd registration of rnncore::rnn_forward (what
    torch.compile relies on), by torch.library.opcheck."""
    from rnncore.torch import _ops

    torch.manual_seed(0)
    m = rt.GRU(3, 4, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    weights = [w.detach().clone().requires_grad_() for w in m._flat_weights]
    args = (x, None, None, None, None, weights, "gru", 2, False, True, True)
    torch.library.opcheck(_ops.rnn_forward, args,
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_training_caches_are_freed_after_backward_and_with_the_graph():
    import gc

    from rnncore.torch import _ops

    gc.collect()
    before = len(_ops._CACHES)
    m = rt.LSTM(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, requires_grad=True)
    out, _ = m(x)
    assert len(_ops._CACHES) == before + 1
    out.sum().backward()
    assert len(_ops._CACHES) == before  # freed with the saved tensors, though `out` lives on
    out, state = m(x)
    del out, state
    gc.collect()
    assert len(_ops._CACHES) == before  # graph dropped without backward
    with torch.no_grad():
        m(x)
    assert len(_ops._CACHES) == before

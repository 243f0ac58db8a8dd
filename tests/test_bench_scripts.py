"""Every Python script in bench/ and examples/ still starts: it imports what it needs from
rnncore (a script that imported a removed private module, bench/torch_train.py importing
rnncore._compiled after issue 15's seams, failed only when somebody ran it) and parses --help."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(ROOT.glob("bench/*.py")) + sorted(ROOT.glob("examples/*.py"))
NEEDS = {"torch_train.py": "torch", "ddp_train.py": "torch"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_script_starts_and_prints_its_help(script):
    needed = NEEDS.get(script.name)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{script.name} needs {needed}")
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def test_torch_train_counts_the_matrix_vector_work_inside_the_layer_count():
    """The N = 1 bound of bench/torch_train.py counts the recurrent products (forward and
    backward) at the matrix-vector rate: with input size = hidden size (H = 64, the embedding's
    width) they are a third of the layer's training work as the harness counts it (forward,
    backward products, weight gradients: three equal parts, each half input-side, half recurrent;
    two of the three recurrent halves are matrix-vector products)."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("torch_train", ROOT / "bench" / "torch_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for kind in ("rnn", "lstm", "gru"):
        total = module.layer_flops(kind, 64, 1, 50, 1)
        assert module.recurrent_matvec_flops(kind, 64, 1, 50) == pytest.approx(total / 3)
        # larger H: the first layer's input side (64 wide) is smaller than its recurrent side
        assert module.recurrent_matvec_flops(kind, 256, 1, 50) > module.layer_flops(kind, 256, 1, 50, 1) / 3


def test_lengths_tail_times_the_steps_with_few_sequences_left(tmp_path):
    """bench/lengths.py --tail: one entry per asked row count, each with a per-step cost, that
    cost per row, and a padded step's cost per row (positive: a padded call takes time); a row
    count outside 1..N is refused before anything runs, naming the shape."""
    out = tmp_path / "tail.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "lengths.py"), "--shapes",
                           "lstm:16x4x20,gru:8x3x12", "--tail", "1,3", "--repeats", "1",
                           "--modes", "inference", "--no-torch", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert [r["cell"] for r in results] == ["lstm", "gru"]
    for r in results:
        assert [t["rows_left"] for t in r["tail"]] == [1, 3]
        for t in r["tail"]:
            assert t["padded_us_per_row"] > 0
            assert t["us_per_row"] == pytest.approx(t["us_per_step"] / t["rows_left"])
    assert done.stdout.count("sequence(s) left") == 4
    for r in results:  # each ratio is the median of the per-round ratios, the pairs kept in order
        rounds = r["rounds_ms"]
        assert len(rounds["rnncore lengths"]) == len(rounds["rnncore padded"]) == 1
        assert r["vs_padded"] == pytest.approx(rounds["rnncore lengths"][0] / rounds["rnncore padded"][0])


def test_lengths_ratios_are_medians_of_per_round_ratios(tmp_path):
    """bench/lengths.py: 'vs padded' is the median over rounds of each round's own ratio, not the
    ratio of the two medians (they differ when the machine's speed drifts between rounds)."""
    out = tmp_path / "lengths.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "lengths.py"), "--shapes",
                           "lstm:8x3x10", "--repeats", "4", "--modes", "inference", "--no-torch",
                           "--json", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    (r,) = json.loads(out.read_text())["results"]
    lengths, padded = r["rounds_ms"]["rnncore lengths"], r["rounds_ms"]["rnncore padded"]
    assert len(lengths) == len(padded) == 4
    ratios = sorted(a / b for a, b in zip(lengths, padded))
    assert r["vs_padded"] == pytest.approx((ratios[1] + ratios[2]) / 2)
    assert r["ms"]["rnncore lengths"] == pytest.approx(sorted(lengths)[1] / 2 + sorted(lengths)[2] / 2)
    refused = subprocess.run([sys.executable, str(ROOT / "bench" / "lengths.py"), "--shapes",
                              "gru:8x3x12", "--tail", "4", "--no-torch"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert refused.returncode == 2
    assert "must be 1..3 for gru:8x3x12, got [4]" in refused.stderr

"""`rnncore nextword`: tiny runs, the baselines' probabilities, the stream's prompt, errors, Ctrl-C."""

import importlib.util
import re
import sys

import numpy as np
import pytest

from rnncore import charlm
from rnncore.apps import nextword
from _apps_testing import assert_one_line_error, interrupt_after_header, interrupt_on_call, run

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

TINY = ["nextword", "--steps", "60", "--batch", "4", "--bptt", "8", "--hidden", "16", "--embedding", "8",
        "--eval-every", "20", "--lr", "0.01", "--min-count", "2", "--no-progress"]


def prose(tmp_path, sentences=600, seed=0):
    """A file of sentences from a small grammar, paragraphs of five sentences."""
    rng = np.random.default_rng(seed)
    subjects = ["the value", "a file", "the parser", "this function", "the result"]
    verbs = ["returns", "reads", "holds", "changes", "checks"]
    objects = ["the name of the module", "a new list", "the path", "an integer", "the first line"]
    lines = []
    for i in range(sentences):
        lines.append(f"{subjects[rng.integers(5)]} {verbs[rng.integers(5)]} {objects[rng.integers(5)]}.")
        if i % 5 == 4:
            lines.append("")
    path = tmp_path / "prose.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


def perplexities(out):
    return {m.group(1).strip(): float(m.group(2))
            for m in re.finditer(r"^(uniform|unigram \(add-one\)|bigram \(Kneser-Ney\)|LSTM)\s+([0-9.]+)$", out, re.M)}


def test_tiny_run_learns_and_writes_its_files(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--text", prose(tmp_path), "--prompt", "the value", "--out", str(tmp_path))
    assert code == 0
    ppl = perplexities(out)
    assert set(ppl) == {"uniform", "unigram (add-one)", "bigram (Kneser-Ney)", "LSTM"}
    assert ppl["LSTM"] < 0.5 * ppl["unigram (add-one)"] < ppl["uniform"]  # far better than chance
    running, first = re.search(r"running mean: ([0-9.]+), first step ([0-9.]+)", out).groups()
    assert float(running) < 0.5 * float(first)  # the training perplexity fell well below its start
    assert '"the value"' in out
    lstm_line = next(line for line in out.splitlines() if line.startswith("  LSTM:"))
    assert len(re.findall(r"\S+ 0\.\d{3}", lstm_line)) == 5
    curve = (tmp_path / "nextword_curve.csv").read_text().splitlines()
    assert curve[0] == "step,held_out_perplexity" and [r.split(",")[0] for r in curve[1:]] == ["20", "40", "60"]
    top5 = (tmp_path / "nextword_top5.csv").read_text().splitlines()
    assert top5[0] == "prompt,model,rank,word,probability" and len(top5) == 1 + 10
    assert (tmp_path / "nextword_perplexity.png").exists() == HAS_MATPLOTLIB


def test_default_prompts_and_unknown_words(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--steps", "2", "--text", prose(tmp_path), "--prompt", "zebra returns",
                       "--out", str(tmp_path), "--no-plot")
    assert code == 0
    assert '"zebra returns" (zebra not in the vocabulary: read as <unk>)' in out


def test_stdlib_docstrings_are_english_prose():
    tokens, label = nextword.stdlib_docstrings(3000)
    assert len(tokens) == 3000 and "docstrings" in label
    assert nextword.EOS in tokens
    counts = {w: tokens.count(w) for w in ("the", "of", "a")}
    assert all(c > 20 for c in counts.values()), counts


def test_tokenize_and_vocabulary():
    assert nextword.tokenize("Return the file's Name, or None: 42 (x).") == [
        "return", "the", "file's", "name", ",", "or", "none", ":", "42", "x", "."]
    vocab = nextword.WordVocabulary(["b", "a", "b", "c", "a", "b", nextword.EOS], min_count=2)
    assert vocab.words == ["<unk>", "<eos>", "b", "a"]
    assert list(vocab.encode(["a", "b", "c", "<eos>", "zzz"])) == [3, 2, 0, 1, 0]


def test_bigram_and_unigram_are_distributions():
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 7, size=400)
    ids[ids == 6] = 5  # word 6 never occurs in training, and never as a context
    bigram = nextword.KneserNeyBigram(ids, 8)
    for prev in range(8):
        row = bigram.next_distribution(prev)
        assert np.all(row > 0)
        np.testing.assert_allclose(row.sum(), 1.0, rtol=1e-12)
    unigram = nextword.Unigram(ids, 8)
    np.testing.assert_allclose(unigram.probs.sum(), 1.0, rtol=1e-12)


def test_bigram_beats_unigram_on_a_predictable_sequence():
    ids = np.tile(np.arange(5), 200)  # each word always followed by the next
    bigram, unigram = nextword.KneserNeyBigram(ids, 5), nextword.Unigram(ids, 5)
    assert bigram.perplexity(ids) < 1.5 < 4.9 < unigram.perplexity(ids)


def test_prompt_through_the_stream_equals_the_whole_sequence():
    vocab = nextword.WordVocabulary("the value of the file is the value".split(), min_count=1)
    model = charlm.CharLM(len(vocab), 6, 10, seed=3)
    bigram = nextword.KneserNeyBigram(vocab.encode("the value of the file".split()), len(vocab))
    prediction = nextword.predict_next(model, bigram, vocab, "the value of")
    ids = vocab.encode([nextword.EOS, "the", "value", "of"])
    hidden, _ = model.lstm(model.embedding(ids[:, None]))
    probs = nextword.softmax(model.head(hidden[-1, 0]).astype(np.float64))
    expected = nextword.top_words(probs, vocab)
    assert [w for w, _ in prediction.lstm] == [w for w, _ in expected]
    np.testing.assert_allclose([p for _, p in prediction.lstm], [p for _, p in expected], rtol=1e-4)


# ---------------------------------------------------------------- errors and Ctrl-C
@pytest.mark.parametrize("argv", [
    ["--min-count", "0"],
    ["--max-words", "5"],
    ["--steps", "0"],
    ["--lr", "-1"],
    ["--bptt", "x"],
])
def test_bad_arguments_are_one_line_usage_errors(capsys, argv):
    code, _, err = run(capsys, "nextword", *argv)
    assert_one_line_error(code, err, "rnncore nextword", 2)


def test_missing_and_short_files_are_one_line_errors(capsys, tmp_path):
    code, _, err = run(capsys, "nextword", "--text", str(tmp_path / "nope.txt"), "--out", str(tmp_path))
    assert_one_line_error(code, err, "rnncore nextword", 1)
    short = tmp_path / "short.txt"
    short.write_text("a few words only.", encoding="utf-8")
    code, _, err = run(capsys, "nextword", "--text", str(short), "--out", str(tmp_path))
    assert_one_line_error(code, err, "rnncore nextword", 1)
    assert "text too short" in err


def test_help(capsys):
    code, out, _ = run(capsys, "nextword", "--help")
    assert code == 0 and out.startswith("usage: rnncore nextword")


def test_interrupted_training_still_reports(capsys, tmp_path, monkeypatch):
    interrupt_on_call(monkeypatch, charlm.CharLM, "loss_and_grads", 30)
    code, out, _ = run(capsys, *TINY, "--text", prose(tmp_path), "--out", str(tmp_path), "--no-plot")
    assert code == 130
    assert "interrupted at step 29 of 60" in out
    assert "LSTM" in perplexities(out) and "top 5 next words" in out


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_prints_the_perplexities_and_exits_130(tmp_path):
    code, out, err = interrupt_after_header([*TINY, "--steps", "1000000", "--text", prose(tmp_path),
                                             "--out", str(tmp_path), "--no-plot"], "baselines on")
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted at step" in out and "bigram (Kneser-Ney)" in out

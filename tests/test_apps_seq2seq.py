"""`rnncore seq2seq`: the encoder-decoder with and without attention, on tiny settings."""

from __future__ import annotations

import csv
import importlib.util
import sys

import numpy as np
import pytest

from _apps_testing import assert_gradients_match_directional_differences, assert_one_line_error
from _apps_testing import interrupt_after_header, keep_threads, run  # noqa: F401 - a fixture
from rnncore.apps import seq2seq

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY = ["seq2seq", "--vocab", "6", "--min-length", "3", "--max-length", "8", "--hidden", "24",
        "--embedding", "8", "--steps", "150", "--batch", "16", "--lr", "0.01", "--test-size", "20",
        "--no-progress"]


# ---------------------------------------------------------------- the task
def test_translations_map_through_the_lexicon_and_reorder():
    task = seq2seq.make_task("reorder", 10, seed=3)
    assert sorted(task.lexicon) == list(range(10))  # a bijection
    source = np.array([[0, 1, 2, 3, 4]]).T
    expected = task.lexicon[[1, 0, 3, 2, 4]]  # the odd last symbol stays
    np.testing.assert_array_equal(task.translate(source)[:, 0], expected)
    lexicon = seq2seq.make_task("lexicon", 10, seed=3)
    np.testing.assert_array_equal(lexicon.translate(source)[:, 0], task.lexicon[[0, 1, 2, 3, 4]])
    reverse = seq2seq.make_task("reverse", 10, seed=3)
    np.testing.assert_array_equal(reverse.translate(source)[:, 0], [4, 3, 2, 1, 0])
    assert task.eos == 10 and task.bos == 11


def test_training_batches_never_hold_a_test_sentence():
    task = seq2seq.make_task("reorder", 2, seed=0)  # 2^3 = 8 sentences of length 3
    test = seq2seq.make_test_set(task, [3], size=6, seed=0)
    assert test[3].shape == (3, 4) and len({s.tobytes() for s in test[3].T}) == 4  # half of them
    batches = seq2seq.TrainingBatches(task, 3, 3, 50, test, seed=0)
    held = {s.tobytes() for s in test[3].T}
    for _ in range(5):
        source, decoder_input, decoder_target = batches.next()
        assert not any(s.tobytes() in held for s in source.T)
        assert (decoder_input[0] == task.bos).all() and (decoder_target[-1] == task.eos).all()
        np.testing.assert_array_equal(decoder_input[1:], decoder_target[:-1])


def test_the_shortest_sentences_are_split_between_test_and_training(capsys, tmp_path):
    code, out, _ = run(capsys, "seq2seq", "--vocab", "2", "--min-length", "1", "--max-length", "2",
                       "--hidden", "4", "--embedding", "2", "--steps", "5", "--no-progress", "--no-plot",
                       "--out", str(tmp_path))
    assert code == 0 and "L=1" in out and "L=2" in out
    rows = (tmp_path / "seq2seq_accuracy.csv").read_text().splitlines()
    assert "no attention,1,1," in rows[1]  # of the 2 sentences of one symbol, 1 is held out


def test_test_lengths_span_the_range():
    assert seq2seq.test_lengths(5, 60) == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    assert seq2seq.test_lengths(3, 5) == [3, 4, 5]


# ---------------------------------------------------------------- the model
@pytest.mark.parametrize("score", [None, "dot", "additive"])
def test_model_gradients_match_finite_differences_float64(score):
    task = seq2seq.make_task("reorder", 5, seed=0)
    model = seq2seq.Seq2Seq(task, embedding=3, hidden=4, score=score, seed=1, dtype=np.float64)
    source, decoder_input, decoder_target = seq2seq.TrainingBatches(task, 4, 4, 3, {}, seed=2).next()
    _, grads = model.loss_and_grads(source, decoder_input, decoder_target)
    assert set(grads) == set(model.parameters())
    assert_gradients_match_directional_differences(
        model.parameters(), grads, lambda: model.loss_and_grads(source, decoder_input, decoder_target)[0])


def test_beam_of_one_finds_at_least_the_greedy_probability():
    task = seq2seq.make_task("reorder", 5, seed=0)
    model = seq2seq.Seq2Seq(task, embedding=4, hidden=8, score="dot", seed=1, dtype=np.float64)
    source = seq2seq.make_test_set(task, [5], size=8, seed=0)[5]
    translator = model.translator()
    greedy, weights = translator.greedy(source, 12)
    beam = translator.beam(source, 12, width=1)
    assert weights.shape[1:] == (8, 5)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)

    def log_probability(n, output):  # teacher forcing: the mean cross-entropy times the steps
        target = np.append(output, task.eos)[:, None]
        decoder_input = np.append(task.bos, output)[:, None]
        return -model.loss_and_grads(source[:, n:n + 1], decoder_input, target)[0] * len(target)

    for n, ((g, g_ended), (b, b_ended)) in enumerate(zip(greedy, beam)):
        if g_ended:
            assert b_ended
            assert log_probability(n, b) >= log_probability(n, g) - 1e-9


@pytest.mark.parametrize("score", [None, "dot"])
def test_teacher_forced_predictions_are_the_training_forward_pass(score):
    task = seq2seq.make_task("lexicon", 5, seed=0)
    model = seq2seq.Seq2Seq(task, embedding=4, hidden=8, score=score, seed=1, dtype=np.float64)
    source, decoder_input, decoder_target = seq2seq.TrainingBatches(task, 6, 6, 4, {}, seed=2).next()
    predicted = model.teacher_forced(source, decoder_input)
    assert predicted.shape == decoder_target.shape
    # The loss of the argmax targets is below that of any other targets, e.g. the reference.
    best = model.loss_and_grads(source, decoder_input, predicted)[0]
    assert best <= model.loss_and_grads(source, decoder_input, decoder_target)[0]
    # The first step agrees with the first step of greedy decoding through the stream.
    outputs, _ = model.translator().greedy(source, 1)
    np.testing.assert_array_equal([o[0] for o, _ in outputs], predicted[0])


def test_scoring_counts_exact_sentences_and_tokens():
    references = np.array([[1, 2], [3, 4], [5, 6]])  # (L=3, N=2)
    outputs = [(np.array([1, 3, 5]), True), (np.array([2, 0]), True)]
    assert seq2seq.score_outputs(outputs, references) == (0.5, 4 / 6)
    no_eos = [(np.array([1, 3, 5, 5, 5]), False), (np.array([2, 4, 6]), True)]
    assert seq2seq.score_outputs(no_eos, references) == (0.5, 1.0)


# ---------------------------------------------------------------- the command
def test_seq2seq_tiny_learns_and_writes_the_table_csv_and_plots(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--out", str(tmp_path))
    assert code == 0
    losses = {}
    for line in out.splitlines():
        if "training loss" in line:
            name = line.split(":")[0]
            first, final = line.split("training loss ")[1].split(" nats")[0].split(" -> ")
            losses[name] = (float(first), float(final))
    assert set(losses) == {"no attention", "attention"}
    for first, final in losses.values():
        assert final < 0.6 * first  # well below where it started
    rows = list(csv.DictReader((tmp_path / "seq2seq_accuracy.csv").read_text().splitlines()))
    assert {r["model"] for r in rows} == {"no attention", "attention"}
    assert [int(r["source_length"]) for r in rows if r["model"] == "attention"] == [3, 4, 5, 6, 7, 8]
    shortest = [float(r["token_accuracy"]) for r in rows if r["source_length"] == "3"]
    assert min(shortest) > 2 / 6  # well above chance, 1/6
    forced = [float(r["teacher_forced_token_accuracy"]) for r in rows if r["source_length"] == "3"]
    assert min(forced) > 2 / 6
    assert "L=3" in out and "L=8" in out and "token accuracy from L=3 to L=8" in out and "teacher-forced" in out
    if HAS_MATPLOTLIB:
        assert (tmp_path / "seq2seq_accuracy.png").stat().st_size > 1000
        assert (tmp_path / "seq2seq_attention.png").stat().st_size > 1000
    else:
        assert "install matplotlib" in out


def test_seq2seq_beam_and_additive_score_run(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--steps", "20", "--beam", "3", "--score", "additive",
                       "--task", "reverse", "--no-plot", "--out", str(tmp_path))
    assert code == 0
    assert "beam-search (width 3) decoding" in out and "additive attention" in out
    assert (tmp_path / "seq2seq_accuracy.csv").exists() and not (tmp_path / "seq2seq_accuracy.png").exists()


def test_seq2seq_interrupted_prints_what_was_reached(capsys, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = seq2seq.Seq2Seq.loss_and_grads

    def interrupt_on_the_30th_step(self, *batch):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self, *batch)

    monkeypatch.setattr(seq2seq.Seq2Seq, "loss_and_grads", interrupt_on_the_30th_step)
    code, out, _ = run(capsys, *TINY, "--steps", "20", "--no-plot", "--out", str(tmp_path))
    assert code == 130
    assert "interrupted at step 9 of 20" in out and "interrupted: results so far" in out
    assert "L=3" in out  # the partial table


def test_seq2seq_help(capsys):
    code, out, _ = run(capsys, "seq2seq", "--help")
    assert code == 0 and out.startswith("usage: rnncore seq2seq")


@pytest.mark.parametrize("argv", [
    ["--min-length", "10", "--max-length", "5"],
    ["--vocab", "1"],
    ["--beam", "0"],
    ["--score", "cosine"],
    ["--task", "sort"],
    ["--lr", "0"],
    ["--steps", "x"],
])
def test_seq2seq_bad_arguments_are_one_line_errors(capsys, argv):
    code, _, err = run(capsys, "seq2seq", *argv)
    assert_one_line_error(code, err, "rnncore seq2seq")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_seq2seq_with_the_partial_result(tmp_path):
    code, out, err = interrupt_after_header(
        [*TINY, "--steps", "100000", "--out", str(tmp_path), "--no-plot"], "test:")
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted: results so far" in out and "L=3" in out

"""`rnncore tag`: bidirectional against one-way LSTM tagging, on tiny settings."""

from __future__ import annotations

import csv
import importlib.util
import sys

import numpy as np
import pytest

from _apps_testing import assert_gradients_match_directional_differences, assert_one_line_error
from _apps_testing import interrupt_after_header, keep_threads, run  # noqa: F401 - a fixture
from rnncore.apps import tag
from rnncore.nn import parameter_count

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
TINY = ["tag", "--vocab", "4", "--length", "6", "--hidden", "12", "--embedding", "4", "--steps", "400",
        "--batch", "16", "--lr", "0.02", "--test-size", "200", "--no-progress"]


def table_rows(out):
    rows = {}
    for line in out.splitlines():
        for name in ("bidirectional", "one-way ceiling", "one-way"):
            if line.startswith(name + " "):
                rows[name] = line[len(name):].split()
                break
    return rows


def test_tags_say_seen_before_and_occurs_again():
    sequences = np.array([[1, 2, 1, 3, 2, 1], [0, 0, 0, 0, 0, 0]]).T
    np.testing.assert_array_equal(tag.tags_of(sequences)[:, 0], [1, 1, 3, 0, 2, 2])
    np.testing.assert_array_equal(tag.tags_of(sequences)[:, 1], [1, 3, 3, 3, 3, 2])


def test_one_way_ceiling_is_the_best_position_only_guess():
    # Length 2, 2 symbols: the second position is always "last" (exact); the first occurs
    # again with probability 1/2: the ceiling is (1/2 + 1) / 2.
    assert tag.one_way_ceiling(2, 2) == pytest.approx(0.75)
    assert tag.one_way_ceiling(1000, 10) > 0.99  # repeats are rare: guessing "no" is nearly right


def test_one_way_hidden_size_matches_the_parameter_count():
    for hidden, embedding in ((48, 16), (12, 4), (1, 1)):
        one_way = tag.one_way_hidden(hidden, embedding)
        budget = parameter_count("lstm", embedding, hidden, bidirectional=True) + (2 * hidden + 1) * 4
        count = lambda h: parameter_count("lstm", embedding, h) + (h + 1) * 4
        assert abs(count(one_way) - budget) <= min(abs(count(h) - budget) for h in (one_way - 1, one_way + 1))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_tagger_gradients_match_finite_differences_float64(bidirectional):
    model = tag.Tagger(vocab=5, embedding=3, hidden=4, bidirectional=bidirectional, seed=0, dtype=np.float64)
    sequences = tag.random_sequences(np.random.default_rng(1), 5, 6, 3)
    labels = tag.tags_of(sequences)
    _, grads = model.loss_and_grads(sequences, labels)
    assert_gradients_match_directional_differences(
        model.parameters(), grads, lambda: model.loss_and_grads(sequences, labels)[0])


def test_tag_tiny_learns_and_the_reverse_direction_helps(capsys, tmp_path):
    code, out, _ = run(capsys, *TINY, "--out", str(tmp_path))
    assert code == 0
    rows = table_rows(out)
    bi, one_way, ceiling = rows["bidirectional"], rows["one-way"], rows["one-way ceiling"]
    for row in (bi, one_way):
        first, final = float(row[3]), float(row[5])
        assert final < 0.6 * first  # the loss fell well below its start
        assert float(row[6]) > 0.5  # accuracy well above chance (0.25)
    assert float(bi[6]) > float(one_way[6])  # the reverse direction helps...
    assert float(bi[8]) > float(one_way[8])  # ...with the right-context half
    assert float(one_way[6]) <= float(ceiling[0]) + 0.03  # a one-way model cannot beat its ceiling
    rows = list(csv.DictReader((tmp_path / "tag_accuracy.csv").read_text().splitlines()))
    assert [r["position"] for r in rows if r["model"] == "one-way"] == [str(t) for t in range(6)]
    if HAS_MATPLOTLIB:
        assert (tmp_path / "tag_accuracy.png").stat().st_size > 1000
    else:
        assert "install matplotlib" in out


def test_tag_interrupted_prints_the_partial_table(capsys, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = tag.Tagger.loss_and_grads

    def interrupt_on_the_30th_step(self, *batch):
        calls["n"] += 1
        if calls["n"] == 30:
            raise KeyboardInterrupt
        return original(self, *batch)

    monkeypatch.setattr(tag.Tagger, "loss_and_grads", interrupt_on_the_30th_step)
    code, out, _ = run(capsys, *TINY, "--steps", "20", "--no-plot", "--out", str(tmp_path))
    assert code == 130
    assert "interrupted: results so far (one-way stopped at step 9 of 20)" in out
    rows = table_rows(out)
    assert rows["bidirectional"][2] == "20" and rows["one-way"][2] == "9"


def test_tag_help(capsys):
    code, out, _ = run(capsys, "tag", "--help")
    assert code == 0 and out.startswith("usage: rnncore tag")


@pytest.mark.parametrize("argv", [["--length", "1"], ["--vocab", "1"], ["--hidden", "0"], ["--lr", "-1"],
                                  ["--bogus"]])
def test_tag_bad_arguments_are_one_line_errors(capsys, argv):
    code, _, err = run(capsys, "tag", *argv)
    assert_one_line_error(code, err, "rnncore tag")


def test_tag_out_that_is_a_file_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, *TINY, "--out", str(blocker))
    assert_one_line_error(code, err, "rnncore tag", expected_code=1)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_stops_tag_with_the_partial_table(tmp_path):
    code, out, err = interrupt_after_header(
        [*TINY, "--steps", "100000", "--out", str(tmp_path), "--no-plot"], "test set:")
    assert code == 130, err
    assert "Traceback" not in err
    assert "interrupted: results so far (bidirectional stopped at step" in out
    assert "bidirectional" in table_rows(out)

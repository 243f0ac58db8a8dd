"""`rnncore tag`: sequence tagging with a bidirectional LSTM against the same model one-way.

Every position of a sequence of random symbols gets one of four tags from two questions:
did this symbol occur before (left context) and does it occur again later (right context)?

    tag 0: first and last occurrence      tag 1: first occurrence, occurs again
    tag 2: seen before, last occurrence   tag 3: seen before, occurs again

A left-to-right LSTM can answer the first question exactly and can only guess the second: the
best guess at position t, knowing only the position, is "occurs again" when
1 - (1 - 1/V)^(L-1-t) > 1/2, and the mean over positions of that guess's hit rate is the
ceiling printed as "one-way ceiling". The bidirectional LSTM's reverse direction reads the
sequence from the right and can answer both.

Both models are Embedding -> LSTM -> Linear on every position, cross-entropy, Adam, the same
batches, steps and seed; the one-way LSTM's hidden size is matched to the bidirectional one's
parameter count. The test set is held out (its own generator); the models are tested as
prepared models (weights packed once).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _cli
from .._plotting import pyplot, save_plain_figure
from ..layers import LSTM
from ..nn.losses import softmax_cross_entropy
from ..nn import Embedding, Linear, parameter_count
from ._training import TrainingRecord, add_training_options, train

TAGS = 4
MODELS = ("bidirectional", "one-way")


def tags_of(sequences: np.ndarray) -> np.ndarray:
    """The tags of a (L, N) batch of symbols: 2 * (seen before) + (occurs again later)."""
    same = sequences[:, None, :] == sequences[None, :, :]  # (L, L, N): [t, s] symbol t == symbol s
    length = sequences.shape[0]
    before = np.tril(np.ones((length, length), bool), k=-1)[:, :, None]  # s < t
    seen_before = (same & before).any(axis=1)
    occurs_again = (same & before.transpose(1, 0, 2)).any(axis=1)  # s > t
    return 2 * seen_before.astype(np.int64) + occurs_again


def one_way_ceiling(vocab: int, length: int) -> float:
    """The best expected accuracy without right context: the "seen before" half exact, the
    "occurs again" half guessed from the position alone."""
    again = 1.0 - (1.0 - 1.0 / vocab) ** (length - 1 - np.arange(length))
    return float(np.maximum(again, 1.0 - again).mean())


def one_way_hidden(bidirectional_hidden: int, embedding: int) -> int:
    """The one-way hidden size whose model (LSTM and head) has the parameter count closest to the
    bidirectional model of ``bidirectional_hidden`` per direction."""
    def count(hidden: int, bidirectional: bool) -> int:
        directions = 2 if bidirectional else 1
        return parameter_count("lstm", embedding, hidden, bidirectional=bidirectional) \
            + (directions * hidden + 1) * TAGS

    budget = count(bidirectional_hidden, True)
    # 4H^2 + (4E + 8 + 4) H + 4 = budget: the positive root, then the closer neighbour.
    a, b, c = 4, 4 * embedding + 8 + TAGS, TAGS - budget
    root = (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    return min({max(1, math.floor(root)), max(1, math.ceil(root))},
               key=lambda h: abs(count(h, False) - budget))


class Tagger:
    """Embedding -> LSTM (one-way or bidirectional) -> Linear on every position."""

    def __init__(self, vocab: int, embedding: int, hidden: int, bidirectional: bool, seed: int,
                 dtype=np.float32) -> None:
        self.embedding = Embedding(vocab, embedding, dtype=dtype, seed=seed)
        self.lstm = LSTM(embedding, hidden, bidirectional=bidirectional, dtype=dtype, seed=seed + 1)
        self.head = Linear(self.lstm.num_directions * hidden, TAGS, dtype=dtype, seed=seed + 2)

    def parameters(self) -> dict:
        return {"embedding": self.embedding.parameters(), "lstm": self.lstm.parameters(),
                "head": self.head.parameters()}

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for layer in (self.embedding, self.lstm, self.head))

    def loss_and_grads(self, sequences: np.ndarray, tags: np.ndarray):
        embedded, embedding_cache = self.embedding.forward(sequences)
        hidden, _, lstm_cache = self.lstm.forward(embedded)
        logits, head_cache = self.head.forward(hidden)
        loss, grad_logits = softmax_cross_entropy(logits, tags)
        grad_hidden, head_grads = self.head.backward(head_cache, grad_logits)
        lstm_grads = self.lstm.backward(lstm_cache, grad_hidden)
        grads = {"embedding": self.embedding.backward(embedding_cache, lstm_grads.input),
                 "lstm": lstm_grads.params, "head": head_grads}
        return float(loss), grads

    def predict(self, sequences: np.ndarray) -> np.ndarray:
        """The most likely tag of every position, (L, N), run as a prepared model."""
        hidden, _ = self.lstm.prepare()(self.embedding(sequences))
        return self.head(hidden).argmax(axis=-1)


@dataclass
class TagConfig:
    vocab: int = 16
    length: int = 20
    embedding: int = 16
    hidden: int = 48
    steps: int = 1500
    batch: int = 32
    lr: float = 5e-3
    clip: float = 1.0
    test_size: int = 1000
    seed: int = 0
    progress: bool = True


@dataclass
class TagResult:
    name: str
    hidden: int
    parameters: int
    training: TrainingRecord = field(default_factory=TrainingRecord)
    accuracy: float = float("nan")
    seen_before: float = float("nan")  # accuracy of the left-context half of the tag
    occurs_again: float = float("nan")  # ... and of the right-context half
    by_position: list = field(default_factory=list)


def random_sequences(rng: np.random.Generator, vocab: int, length: int, count: int) -> np.ndarray:
    return rng.integers(0, vocab, (length, count), dtype=np.int64)


def score(model: Tagger, test: np.ndarray, result: TagResult) -> None:
    truth = tags_of(test)
    predicted = model.predict(test)
    right = predicted == truth
    result.accuracy = float(right.mean())
    result.seen_before = float((predicted // 2 == truth // 2).mean())
    result.occurs_again = float((predicted % 2 == truth % 2).mean())
    result.by_position = right.mean(axis=1).tolist()


def run(config: TagConfig) -> list[TagResult]:
    """Train and test the bidirectional tagger, then the one-way one; stops after an interrupt."""
    test = random_sequences(np.random.default_rng([config.seed, 1]), config.vocab, config.length,
                            config.test_size)
    sizes = {"bidirectional": config.hidden, "one-way": one_way_hidden(config.hidden, config.embedding)}
    results = []
    for name in MODELS:
        model = Tagger(config.vocab, config.embedding, sizes[name], name == "bidirectional", config.seed)
        rng = np.random.default_rng([config.seed, 2])  # the same batches for both models

        def next_batch():
            sequences = random_sequences(rng, config.vocab, config.length, config.batch)
            return model.loss_and_grads(sequences, tags_of(sequences))

        training = train(model.parameters(), next_batch, config.steps, config.lr, config.clip,
                         f"{name:>13}", config.progress)
        result = TagResult(name, sizes[name], model.num_parameters(), training)
        if training.steps_done:
            score(model, test, result)
        results.append(result)
        if training.interrupted:
            break
    return results


# ---------------------------------------------------------------- output
def format_table(results: list[TagResult], config: TagConfig) -> str:
    lines = [f"{'model':<14} {'hidden':>6} {'params':>7} {'steps':>6} {'loss':>13} {'accuracy':>9} "
             f"{'seen before':>12} {'occurs again':>13} {'steps/s':>8}"]
    for r in results:
        t = r.training
        speed = t.steps_done / t.seconds if t.seconds else float("nan")
        lines.append(f"{r.name:<14} {r.hidden:>6} {r.parameters:>7} {t.steps_done:>6} "
                     f"{t.first_loss:>5.3f} -> {t.final_loss:<5.3f} {r.accuracy:>9.3f} "
                     f"{r.seen_before:>12.3f} {r.occurs_again:>13.3f} {speed:>8.1f}")
    ceiling = one_way_ceiling(config.vocab, config.length)
    lines.append(f"{'one-way ceiling':<14} {'':>6} {'':>7} {'':>6} {'':>13} {ceiling:>9.3f} "
                 f"{1.0:>12.3f} {ceiling:>13.3f}")
    lines.append(f"{'chance':<14} {'':>6} {'':>7} {'':>6} {'':>13} {1 / TAGS:>9.3f}")
    return "\n".join(lines)


def write_csv(results: list[TagResult], path: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "position", "accuracy"])
        for r in results:
            writer.writerows([r.name, t, f"{a:.4f}"] for t, a in enumerate(r.by_position))


def plot_by_position(results: list[TagResult], config: TagConfig, path: str) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for r in results:
        if r.by_position:
            axes.plot(range(config.length), r.by_position, marker=".",
                      label=f"{r.name} LSTM (H={r.hidden}, {r.parameters} params)")
    again = 1.0 - (1.0 - 1.0 / config.vocab) ** (config.length - 1 - np.arange(config.length))
    axes.plot(range(config.length), np.maximum(again, 1 - again), color="gray", linestyle="--",
              label="one-way ceiling (right context guessed)")
    axes.axhline(1 / TAGS, color="gray", linestyle=":", label="chance (1/4)")
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("position in the sequence")
    axes.set_ylabel("test accuracy")
    axes.set_title(f"Tagging by left and right context: L={config.length}, {config.vocab} symbols, "
                   f"{config.steps} steps each", fontsize=10)
    save_plain_figure(plt, figure, (axes,), path)
    return True


# ---------------------------------------------------------------- the command
def register(subparsers: argparse._SubParsersAction) -> None:
    d = TagConfig
    parser = subparsers.add_parser(
        "tag", help="bidirectional vs one-way LSTM tagging with left and right context",
        description="Tag every position of random symbol sequences by whether its symbol occurred "
                    "before (left context) and whether it occurs again (right context). Train a "
                    "bidirectional LSTM tagger and a one-way one of the same parameter count on the "
                    "same batches and compare held-out accuracy, overall, per half of the tag and "
                    "per position. Writes a table, a CSV and (with matplotlib) a PNG to --out.")
    parser.add_argument("--vocab", type=_cli.int_at_least(2), default=d.vocab,
                        help=f"distinct symbols (default {d.vocab})")
    parser.add_argument("--length", type=_cli.int_at_least(2), default=d.length,
                        help=f"sequence length (default {d.length})")
    parser.add_argument("--hidden", type=_cli.int_at_least(1), default=d.hidden,
                        help="hidden size per direction of the bidirectional LSTM; the one-way LSTM's "
                             f"is matched to its parameter count (default {d.hidden})")
    parser.add_argument("--embedding", type=_cli.int_at_least(1), default=d.embedding,
                        help=f"embedding size (default {d.embedding})")
    add_training_options(parser, d, "sequences")
    parser.add_argument("--test-size", type=_cli.int_at_least(1), default=d.test_size,
                        help=f"held-out sequences (default {d.test_size})")
    _cli.add_common(parser)
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    config = TagConfig(vocab=args.vocab, length=args.length, embedding=args.embedding, hidden=args.hidden,
                       steps=args.steps, batch=args.batch, lr=args.lr, test_size=args.test_size,
                       seed=args.seed, progress=args.progress)
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before training, not after
    example = random_sequences(np.random.default_rng(config.seed), min(config.vocab, 6), 10, 1)
    print("rnncore tag: what the reverse direction of a bidirectional LSTM buys")
    print("  tag of each position: did its symbol occur before (left context), does it occur again "
          "(right context)?")
    print(f"  e.g. {example[:, 0].tolist()} -> {tags_of(example)[:, 0].tolist()} "
          "(0 first+last, 1 first+again, 2 seen+last, 3 seen+again)")
    print(f"  {config.vocab} symbols, length {config.length}; Embedding({config.embedding}) -> LSTM -> "
          f"Linear(4) on every position, cross-entropy; Adam lr {config.lr:g}, clip {config.clip:g}, "
          f"batch {config.batch}, {config.steps} steps, seed {config.seed}, {args.threads} thread(s)")
    print(f"  test set: {config.test_size} held-out sequences", flush=True)
    start = time.perf_counter()
    with _cli.threads(args.threads):
        results = run(config)
    interrupted = any(r.training.interrupted for r in results)
    print()
    if interrupted:
        print(f"interrupted: results so far ({results[-1].name} stopped at step "
              f"{results[-1].training.steps_done} of {config.steps})")
    print(format_table(results, config))
    csv_path = os.path.join(args.out, "tag_accuracy.csv")
    write_csv(results, csv_path)
    png_path = os.path.join(args.out, "tag_accuracy.png")
    if not args.plot:
        print(f"accuracy by position: {csv_path} (--no-plot)")
    elif plot_by_position(results, config, png_path):
        print(f"accuracy by position: {png_path} (data: {csv_path})")
    else:
        print(f"accuracy by position: {csv_path} (install matplotlib (pip install 'rnncore[plot]') "
              "for the PNG)")
    print(f"total time {time.perf_counter() - start:.0f} s")
    return _cli.INTERRUPTED if interrupted else 0

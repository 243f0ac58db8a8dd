"""`rnncore charlm`: a character-level LSTM language model trained with truncated BPTT.

The model is Embedding(V, E) -> LSTM(E, H) -> Linear(H, V) over the V distinct characters of
the text. Training splits the training part of the text into ``batch`` contiguous streams and
walks along them ``bptt`` characters at a time; the LSTM state at the end of one chunk is the
initial state of the next (truncated BPTT: the gradient stops at the chunk boundary, the state
does not). Adam, gradients clipped to a global norm. The held-out tail of the text is scored in
bits per character (the mean cross-entropy in base 2), reading it as one stream from a zero
state; then text is sampled from the model at a given temperature.

Without a text file the corpus is Python source already on every machine: a fixed list of
modules of Python's standard library (``os.path.dirname(os.__file__)``), concatenated.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .._cli import INTERRUPTED, CommandError, add_common, float_range, int_at_least, threads
from .._progress import progress_bar
from ..nn.grads import clip_grad_norm
from ..layers import LSTM
from ..nn.losses import softmax, softmax_cross_entropy
from ..nn import Embedding, Linear
from ..nn.optim import Adam

__all__ = ["CharLMConfig", "CharLM", "TextError", "Vocabulary", "default_corpus", "read_text", "split_text",
           "train", "sample"]

# Modules present in every CPython since 3.9; read in this order until max_chars is reached.
STDLIB_MODULES = (
    "argparse.py", "textwrap.py", "functools.py", "random.py", "shutil.py", "tempfile.py",
    "contextlib.py", "dataclasses.py", "heapq.py", "bisect.py", "string.py", "fractions.py",
    "statistics.py", "difflib.py", "inspect.py", "pathlib.py", "os.py", "subprocess.py",
)


class TextError(CommandError):
    """A text that cannot be used: unreadable, not UTF-8, or too short."""


def default_corpus(max_chars: int) -> tuple[str, str]:
    """Standard-library Python source, up to ``max_chars`` characters; returns (text, label)."""
    folder = os.path.dirname(os.__file__)
    parts, used, total = [], [], 0
    for name in STDLIB_MODULES:
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as handle:
                content = handle.read()
        except (OSError, UnicodeDecodeError):
            continue  # a trimmed installation may lack some modules
        parts.append(content)
        used.append(name)
        total += len(content)
        if total >= max_chars:
            break
    if not parts:
        raise TextError(f"no standard-library sources found in {folder}; pass --text FILE")
    names = ", ".join(used[:3]) + (", …" if len(used) > 3 else "")
    return "".join(parts)[:max_chars], f"Python source, {len(used)} stdlib modules ({names}) from {folder}"


def read_text(path: str, max_chars: int) -> tuple[str, str]:
    """The first ``max_chars`` characters of a UTF-8 file; raises TextError with a short reason."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(max_chars)
    except UnicodeDecodeError as error:
        raise TextError(f"cannot read {path!r}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise TextError(f"cannot read {path!r}: {error.strerror or error}") from None
    return text, path


class Vocabulary:
    """The distinct characters of a text, sorted; characters <-> integer ids."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        return np.fromiter((self.index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class CharLM:
    """Embedding -> LSTM -> Linear over a token vocabulary: characters here, words in
    `rnncore nextword` (rnncore.apps.nextword), which trains it with ``train`` too."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int = 1,
                 seed: int | None = None) -> None:
        seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
        self.embedding = Embedding(vocab_size, embedding_dim, seed=seeds[0])
        self.lstm = LSTM(embedding_dim, hidden_size, num_layers=num_layers, seed=seeds[1])
        self.head = Linear(hidden_size, vocab_size, seed=seeds[2])

    def parameters(self) -> dict:
        return {"embedding": self.embedding.parameters(), "lstm": self.lstm.parameters(),
                "head": self.head.parameters()}

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for layer in (self.embedding, self.lstm, self.head))

    def loss_and_grads(self, inputs: np.ndarray, targets: np.ndarray, state):
        """Mean cross-entropy (nats) of one (T, N) chunk, the gradients, and the final state."""
        embedded, embedding_cache = self.embedding.forward(inputs)
        hidden, final_state, lstm_cache = self.lstm.forward(embedded, hx=state)
        logits, head_cache = self.head.forward(hidden)
        loss, grad_logits = softmax_cross_entropy(logits, targets)
        grad_hidden, head_grads = self.head.backward(head_cache, grad_logits)
        lstm_grads = self.lstm.backward(lstm_cache, grad_hidden)
        embedding_grads = self.embedding.backward(embedding_cache, lstm_grads.input)
        grads = {"embedding": embedding_grads, "lstm": lstm_grads.params, "head": head_grads}
        return float(loss), grads, final_state

    def bits_per_token(self, ids: np.ndarray, chunk: int = 2048) -> float:
        """Mean cross-entropy in bits of predicting ids[1:] from what precedes, one stream."""
        state, total = None, 0.0
        for start in range(0, len(ids) - 1, chunk):
            inputs = ids[start:start + chunk]
            targets = ids[start + 1:start + 1 + chunk]
            inputs = inputs[:len(targets)]
            hidden, state = self.lstm(self.embedding(inputs[:, None]), hx=state)
            loss, _ = softmax_cross_entropy(self.head(hidden), targets[:, None], reduction="sum")
            total += float(loss)
        return total / (len(ids) - 1) / math.log(2)

    bits_per_character = bits_per_token


@dataclass
class CharLMConfig:
    steps: int = 1000
    batch: int = 32
    bptt: int = 64
    hidden: int = 128
    embedding: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 250
    held_out: float = 0.1  # fraction of the text kept for scoring…
    max_held_out: int = 20_000  # …at most this many characters
    progress: bool = True
    name: str = "charlm"  # the progress bar's label…
    unit: str = "bpc"  # …and the unit of its losses (bits per token)


@dataclass
class TrainResult:
    steps_done: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    train_loss: float = float("nan")  # running mean, bits per token
    first_loss: float = float("nan")  # the first step's, bits per token
    curve: list = field(default_factory=list)  # [(step, held-out bits per token)]


def split_text(ids: np.ndarray, config: CharLMConfig) -> tuple[np.ndarray, np.ndarray]:
    held = min(config.max_held_out, int(len(ids) * config.held_out))
    return ids[:len(ids) - held], ids[len(ids) - held:]


def train(model: CharLM, train_ids: np.ndarray, held_ids: np.ndarray, config: CharLMConfig) -> TrainResult:
    """Truncated BPTT over ``batch`` contiguous streams; Ctrl-C stops and keeps what was reached."""
    streams = len(train_ids) // config.batch
    if streams < 2:
        raise TextError(f"text too short for --batch {config.batch}: {len(train_ids)} training characters")
    bptt = min(config.bptt, streams - 1)
    # Column n is the n-th stream of the text: row t of the matrix is the t-th step of all streams.
    columns = train_ids[:streams * config.batch].reshape(config.batch, streams).T
    optimizer = Adam(model.parameters(), lr=config.lr)
    result = TrainResult()
    state, position, running = None, 0, None
    bar = progress_bar(config.steps, desc=config.name, disable=not config.progress)
    try:
        for step in range(1, config.steps + 1):
            start = time.perf_counter()
            if position + bptt + 1 > streams:  # end of the streams: start over from a zero state
                state, position = None, 0
            inputs = columns[position:position + bptt]
            targets = columns[position + 1:position + bptt + 1]
            position += bptt
            loss, grads, state = model.loss_and_grads(inputs, targets, state)
            clip_grad_norm(grads, config.clip)
            optimizer.step(grads)
            result.seconds += time.perf_counter() - start
            result.steps_done = step
            bits = loss / math.log(2)
            if step == 1:
                result.first_loss = bits
            running = bits if running is None else 0.95 * running + 0.05 * bits
            result.train_loss = running
            if len(held_ids) > 1 and (step % config.eval_every == 0 or step == config.steps):
                result.curve.append((step, model.bits_per_token(held_ids)))
            if step % 10 == 0 or step == config.steps:
                held = f", held-out {result.curve[-1][1]:.3f}" if result.curve else ""
                bar.set_postfix_str(f"train {running:.3f}{held} {config.unit}", refresh=False)
            bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    if len(held_ids) > 1 and (not result.curve or result.curve[-1][0] != result.steps_done):
        result.curve.append((result.steps_done, model.bits_per_token(held_ids)))
    return result


def sample(model: CharLM, vocab: Vocabulary, prime: str, length: int, temperature: float,
           rng: np.random.Generator) -> str:
    """``length`` characters after ``prime``, drawn from softmax(logits / temperature).

    Runs the LSTM frame by frame with ``rnncore``'s stream (state carried between steps).
    A temperature of 0 picks the most likely character each time.
    """
    stream = model.lstm.stream(batch_size=1)
    known = [c for c in prime if c in vocab.index] or [vocab.chars[0]]
    hidden = None
    for char in known:
        hidden = stream.step(model.embedding(vocab.index[char]))
    out = []
    for _ in range(length):
        logits = model.head(hidden).astype(np.float64)
        if temperature == 0:
            choice = int(np.argmax(logits))
        else:
            probs = softmax(logits / temperature)
            choice = int(rng.choice(len(probs), p=probs / probs.sum()))
        out.append(vocab.chars[choice])
        hidden = stream.step(model.embedding(choice))
    return "".join(known) + "".join(out)


# ---------------------------------------------------------------- the command
def _cmd_charlm(args: argparse.Namespace) -> int:
    if args.text is None:
        text, label = default_corpus(args.max_chars)
    else:
        text, label = read_text(args.text, args.max_chars)
    config = CharLMConfig(steps=args.steps, batch=args.batch, bptt=args.bptt, hidden=args.hidden,
                                 embedding=args.embedding, lr=args.lr, seed=args.seed,
                                 eval_every=args.eval_every, progress=args.progress)
    vocab = Vocabulary(text)
    ids = vocab.encode(text)
    train_ids, held_ids = split_text(ids, config)
    if len(train_ids) < 2 * args.batch or len(held_ids) < 2:
        raise TextError(f"text too short: {len(text)} characters (need a few thousand)")
    model = CharLM(len(vocab), args.embedding, args.hidden, seed=args.seed)
    print(f"rnncore charlm: character-level LSTM on {label}")
    print(f"  {len(text)} characters, vocabulary {len(vocab)}; training on the first {len(train_ids)}, "
          f"scoring the last {len(held_ids)}")
    print(f"  model: Embedding({len(vocab)}, {args.embedding}) -> LSTM({args.embedding}, {args.hidden}) -> "
          f"Linear({args.hidden}, {len(vocab)}), {model.num_parameters()} parameters")
    print(f"  truncated BPTT: {args.batch} streams x {args.bptt} characters per step, state carried; "
          f"Adam lr {args.lr:g}, clip 1.0, {args.steps} steps, seed {args.seed}", flush=True)
    uniform = math.log2(len(vocab))
    with threads(args.threads):
        result = train(model, train_ids, held_ids, config)
        text_out = sample(model, vocab, args.prime, args.sample_chars, args.temperature,
                                 np.random.default_rng(args.seed))
    if result.interrupted:
        print(f"interrupted at step {result.steps_done} of {args.steps}: what was reached so far")
    speed = result.steps_done * args.batch * args.bptt / result.seconds if result.seconds else float("nan")
    print(f"held-out bits per character: {result.curve[-1][1]:.3f} after {result.steps_done} steps "
          f"(uniform guess: {uniform:.3f}; training, running mean: {result.train_loss:.3f}); "
          f"{speed:,.0f} characters/s trained")
    print(f"--- sample (temperature {args.temperature:g}, primed with {args.prime!r}) ---")
    print(text_out)
    print("---")
    return INTERRUPTED if result.interrupted else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `rnncore charlm` subcommand."""
    lm = subparsers.add_parser(
        "charlm", help="character-level LSTM language model (bits per character, samples)",
        description="Train Embedding -> LSTM -> Linear on the characters of a text with truncated BPTT, "
                    "report bits per character on the held-out tail and sample text. Without --text, "
                    "uses Python standard-library sources already on this machine.")
    lm.add_argument("--text", metavar="FILE", help="a UTF-8 text file (default: Python stdlib sources)")
    lm.add_argument("--max-chars", type=int_at_least(100), default=400_000,
                    help="read at most this many characters (default 400000)")
    lm.add_argument("--steps", type=int_at_least(1), default=CharLMConfig.steps,
                    help=f"training steps (default {CharLMConfig.steps})")
    lm.add_argument("--batch", type=int_at_least(1), default=CharLMConfig.batch,
                    help=f"parallel streams (default {CharLMConfig.batch})")
    lm.add_argument("--bptt", type=int_at_least(1), default=CharLMConfig.bptt,
                    help=f"characters per chunk (default {CharLMConfig.bptt})")
    lm.add_argument("--hidden", type=int_at_least(1), default=CharLMConfig.hidden,
                    help=f"LSTM hidden size (default {CharLMConfig.hidden})")
    lm.add_argument("--embedding", type=int_at_least(1), default=CharLMConfig.embedding,
                    help=f"embedding size (default {CharLMConfig.embedding})")
    lm.add_argument("--lr", type=float_range(0.0), default=CharLMConfig.lr,
                    help=f"Adam learning rate (default {CharLMConfig.lr:g})")
    lm.add_argument("--eval-every", type=int_at_least(1), default=CharLMConfig.eval_every,
                    help=f"steps between held-out evaluations (default {CharLMConfig.eval_every})")
    lm.add_argument("--temperature", type=float_range(0.0, low_inclusive=True), default=0.8,
                    help="sampling temperature; 0 = always the most likely (default 0.8)")
    lm.add_argument("--sample-chars", type=int_at_least(0), default=400,
                    help="characters to sample (default 400)")
    lm.add_argument("--prime", default="def ", help="text the sample starts from (default 'def ')")
    add_common(lm)
    lm.set_defaults(func=_cmd_charlm)

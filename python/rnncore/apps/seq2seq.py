"""`rnncore seq2seq`: the encoder-decoder's information bottleneck, and what attention does.

The task is translation-like: a source sentence is a sequence of L symbols (L from 5 to 60);
its translation maps every symbol through a fixed random lexicon, word for word (``lexicon``,
the default: a diagonal alignment). ``--task reorder`` also swaps each pair of neighbours
(positions 0<->1, 2<->3, ...), a local reordering like adjective-noun order between languages;
``--task reverse`` reverses the source. The target ends with an end-of-sentence symbol (EOS);
decoding stops there.

Besides the decoded outputs, the teacher-forced token accuracy (the most likely symbol at each
step with the reference prefix fed, as in training) separates what a model knows of the
translation from the mistakes of decoding: a wrong symbol or a misplaced EOS that the decoder,
trained only on correct prefixes, does not recover from.

Both models are Embedding -> LSTM encoder -> LSTM decoder (its initial state the encoder's
final state) -> ``tanh(W_c [context_t; h_t])`` -> Linear -> softmax, trained with teacher
forcing on the same batches, steps and seed. They differ only in the context:

* without attention it is the encoder's final hidden state at every step, the fixed-size
  summary of the whole source of Cho et al. (2014): everything must pass through it;
* with attention it is a weighted mean of all encoder states, the weights a softmax of
  ``h_t . enc_s`` (Luong et al. 2015; ``--score additive``: Bahdanau et al. 2015).

Training batches have one length each, drawn uniformly from [min, max]; the held-out test set
has ``test_size`` sentences for each length of a grid, none of them seen in training. Testing
decodes greedily (or with ``--beam K``) step by step: the encoder runs as a prepared model, the
decoder as an rnncore Stream, one frame per emitted symbol. Exact match counts sentences whose
whole output (EOS included) is right; token accuracy, positions of the reference translation
that the output gets right.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import dataclass, field

import numpy as np

from .. import _cli
from .._plotting import pyplot, save_plain_figure
from ..layers import LSTM
from ..nn.losses import log_softmax, softmax_cross_entropy
from ..nn import Attention, Embedding, Linear
from ._training import TrainingRecord, add_training_options, train

TASKS = ("lexicon", "reorder", "reverse")
SCORES = ("dot", "additive")
MODELS = ("no attention", "attention")


# ---------------------------------------------------------------- the task
@dataclass(frozen=True)
class Task:
    """Symbols 0..vocab-1 in both languages; the target vocabulary adds EOS and BOS."""

    name: str
    vocab: int
    lexicon: np.ndarray  # source symbol -> target symbol

    @property
    def eos(self) -> int:
        return self.vocab

    @property
    def bos(self) -> int:
        return self.vocab + 1

    def translate(self, source: np.ndarray) -> np.ndarray:
        """The reference translations of a (L, N) batch of sources, (L, N) without EOS."""
        mapped = self.lexicon[source]
        if self.name == "lexicon":
            return mapped
        if self.name == "reverse":
            return mapped[::-1].copy()
        order = np.arange(len(source))
        pairs = order[: len(order) // 2 * 2].reshape(-1, 2)[:, ::-1].reshape(-1)
        order[: len(pairs)] = pairs  # an odd last symbol stays in place
        return mapped[order]


def make_task(name: str, vocab: int, seed: int) -> Task:
    lexicon = np.random.default_rng([seed, 7]).permutation(vocab)
    if name == "reverse":
        lexicon = np.arange(vocab)
    return Task(name, vocab, lexicon)


def test_lengths(min_length: int, max_length: int, points: int = 12) -> list[int]:
    """About ``points`` lengths from min to max, both included, evenly spaced."""
    grid = np.linspace(min_length, max_length, min(points, max_length - min_length + 1))
    return sorted({int(round(v)) for v in grid})


def make_test_set(task: Task, lengths: list[int], size: int, seed: int) -> dict[int, np.ndarray]:
    """``size`` distinct sources (L, size) per length, drawn from their own generator; at most
    half of all the sentences of a length, so that training always has the other half."""
    rng = np.random.default_rng([seed, 1])
    sets = {}
    for length in lengths:
        wanted = min(size, task.vocab ** length // 2)
        rows = {}
        while len(rows) < wanted:
            row = rng.integers(0, task.vocab, length, dtype=np.int64)
            rows.setdefault(row.tobytes(), row)
        sets[length] = np.stack(list(rows.values()), axis=1)
    return sets


class TrainingBatches:
    """Training batches of one length each; a sentence of the test set is never drawn."""

    def __init__(self, task: Task, min_length: int, max_length: int, batch: int,
                 held_out: dict[int, np.ndarray], seed: int) -> None:
        self.task, self.min_length, self.max_length, self.batch = task, min_length, max_length, batch
        self.rng = np.random.default_rng([seed, 2])
        self.held_out = {L: {s.tobytes() for s in sources.T} for L, sources in held_out.items()}

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source (L, N), decoder input BOS + target (L+1, N), decoder target target + EOS)."""
        length = int(self.rng.integers(self.min_length, self.max_length + 1))
        source = self.rng.integers(0, self.task.vocab, (length, self.batch), dtype=np.int64)
        seen = self.held_out.get(length, ())
        for n in range(self.batch):
            while source[:, n].tobytes() in seen:
                source[:, n] = self.rng.integers(0, self.task.vocab, length)
        target = self.task.translate(source)
        bos = np.full((1, self.batch), self.task.bos, np.int64)
        eos = np.full((1, self.batch), self.task.eos, np.int64)
        return source, np.concatenate([bos, target]), np.concatenate([target, eos])


# ---------------------------------------------------------------- the model
class Seq2Seq:
    """Embedding -> LSTM encoder -> LSTM decoder -> tanh(Linear([context; h])) -> Linear.

    ``score`` None: the context is the encoder's final hidden state at every step; "dot" or
    "additive": attention over all encoder states. Both have the same layers and sizes (the
    additive score adds its own small weights).
    """

    def __init__(self, task: Task, embedding: int, hidden: int, score: str | None, seed: int,
                 dtype=np.float32) -> None:
        self.task = task
        self.source_embedding = Embedding(task.vocab, embedding, dtype=dtype, seed=seed)
        self.target_embedding = Embedding(task.vocab + 2, embedding, dtype=dtype, seed=seed + 1)
        self.encoder = LSTM(embedding, hidden, dtype=dtype, seed=seed + 2)
        self.decoder = LSTM(embedding, hidden, dtype=dtype, seed=seed + 3)
        self.attention = None if score is None else Attention(hidden, hidden, score, dtype=dtype, seed=seed + 4)
        self.combine = Linear(2 * hidden, hidden, dtype=dtype, seed=seed + 5)
        self.head = Linear(hidden, task.vocab + 1, dtype=dtype, seed=seed + 6)

    def _layers(self) -> dict:
        layers = {"source_embedding": self.source_embedding, "target_embedding": self.target_embedding,
                  "encoder": self.encoder, "decoder": self.decoder, "combine": self.combine,
                  "head": self.head}
        if self.attention is not None and self.attention.parameters():
            layers["attention"] = self.attention
        return layers

    def parameters(self) -> dict:
        return {name: layer.parameters() for name, layer in self._layers().items()}

    def num_parameters(self) -> int:
        return sum(layer.num_parameters() for layer in self._layers().values())

    def loss_and_grads(self, source: np.ndarray, decoder_input: np.ndarray, decoder_target: np.ndarray):
        """Mean cross-entropy (nats per target symbol) with teacher forcing, and the gradients."""
        source_x, source_cache = self.source_embedding.forward(source)
        encoded, (h_n, c_n), encoder_cache = self.encoder.forward(source_x)
        target_x, target_cache = self.target_embedding.forward(decoder_input)
        decoded, _, decoder_cache = self.decoder.forward(target_x, hx=(h_n, c_n))
        if self.attention is None:
            context, attention_cache = np.broadcast_to(h_n[-1], decoded.shape), None
        else:
            context, _, attention_cache = self.attention.forward(decoded, encoded)
        combined, combine_cache = self.combine.forward(np.concatenate([context, decoded], axis=-1))
        attentional = np.tanh(combined)
        logits, head_cache = self.head.forward(attentional)
        loss, grad_logits = softmax_cross_entropy(logits, decoder_target)

        grad_attentional, head_grads = self.head.backward(head_cache, grad_logits)
        grad_combined = grad_attentional * (1 - attentional * attentional)
        grad_concat, combine_grads = self.combine.backward(combine_cache, grad_combined)
        hidden = decoded.shape[-1]
        grad_context, grad_decoded = grad_concat[..., :hidden], grad_concat[..., hidden:]
        grads = {"head": head_grads, "combine": combine_grads}
        grad_encoded, grad_h_n = None, 0.0
        if self.attention is None:
            grad_h_n = grad_context.sum(axis=0)
        else:
            grad_query, grad_encoded, attention_grads = self.attention.backward(attention_cache, grad_context)
            grad_decoded = grad_decoded + grad_query
            if attention_grads:
                grads["attention"] = attention_grads
        decoder_grads = self.decoder.backward(decoder_cache, grad_decoded)
        grad_h0, grad_c0 = decoder_grads.hx
        encoder_grads = self.encoder.backward(encoder_cache, grad_encoded, (grad_h0 + grad_h_n, grad_c0))
        grads["decoder"] = decoder_grads.params
        grads["encoder"] = encoder_grads.params
        grads["target_embedding"] = self.target_embedding.backward(target_cache, decoder_grads.input)
        grads["source_embedding"] = self.source_embedding.backward(source_cache, encoder_grads.input)
        return float(loss), grads

    def logits(self, hidden: np.ndarray, encoded: np.ndarray, final: np.ndarray):
        """Inference: the output scores (..., V+1) and the attention weights (or None) for decoder
        states ``hidden`` (one step (N, H) or several (T, N, H)), the encoder's states and its
        final hidden state (N, H)."""
        if self.attention is None:
            context, weights = np.broadcast_to(final, hidden.shape), None
        else:
            context, weights = self.attention(hidden, encoded)
        attentional = np.tanh(self.combine(np.concatenate([context, hidden], axis=-1)))
        return self.head(attentional), weights

    def teacher_forced(self, source: np.ndarray, decoder_input: np.ndarray) -> np.ndarray:
        """The most likely symbol at each step given the reference prefix, (L+1, N): what the
        model knows of the translation, with no earlier decoding mistake to recover from."""
        encoded, (h_n, c_n) = self.encoder(self.source_embedding(source))
        decoded, _ = self.decoder(self.target_embedding(decoder_input), hx=(h_n, c_n))
        return self.logits(decoded, encoded, h_n[-1])[0].argmax(axis=-1)

    def translator(self) -> "Translator":
        return Translator(self)


class Translator:
    """Decoding with rnncore's single-step path: the encoder prepared, the decoder a Stream."""

    def __init__(self, model: Seq2Seq) -> None:
        self.model = model
        self.encoder = model.encoder.prepare()

    def _encode(self, source: np.ndarray):
        encoded, (h_n, c_n) = self.encoder(self.model.source_embedding(source))
        return encoded, (h_n, c_n)

    def _log_probs(self, hidden: np.ndarray, encoded: np.ndarray, final: np.ndarray):
        """log p(next symbol) (N, V+1) and the attention weights (N, L) or None, for one step."""
        logits, weights = self.model.logits(hidden, encoded, final)
        return log_softmax(logits), weights

    def greedy(self, source: np.ndarray, max_steps: int):
        """The most likely symbol at each step, for a (L, N) batch of sources.

        Returns (outputs, weights): outputs, a list of N pairs (symbols, ended): the symbols
        up to and without the EOS, and whether an EOS came within max_steps (if not, all
        max_steps symbols); weights (steps, N, L) of the attention, or None without attention.
        """
        task, batch = self.model.task, source.shape[1]
        encoded, state = self._encode(source)
        stream = self.model.decoder.stream(batch_size=batch)
        stream.state = state
        previous = np.full(batch, task.bos, np.int64)
        emitted, attention = [], []
        finished = np.zeros(batch, bool)
        for _ in range(max_steps):
            hidden = stream.step(self.model.target_embedding(previous))
            log_probs, weights = self._log_probs(hidden, encoded, state[0][-1])
            previous = log_probs.argmax(axis=-1)
            emitted.append(previous)
            if weights is not None:
                attention.append(weights)
            finished |= previous == task.eos
            if finished.all():
                break
        emitted = np.stack(emitted)  # (steps, N)
        outputs = []
        for n in range(batch):
            ends = np.flatnonzero(emitted[:, n] == task.eos)
            outputs.append((emitted[: ends[0], n], True) if len(ends) else (emitted[:, n], False))
        return outputs, (np.stack(attention) if attention else None)

    def beam(self, source: np.ndarray, max_steps: int, width: int):
        """Beam search of ``width`` hypotheses per sentence; the finished one of the highest
        total log-probability, where none finished within max_steps the best live one. Without
        length normalisation, so a short output can win over the right, longer one (a weak
        model's outputs end early). Returns outputs as ``greedy`` does (no weights)."""
        task, batch = self.model.task, source.shape[1]
        encoded, (h_n, c_n) = self._encode(source)
        rows = np.repeat(np.arange(batch), width)  # beam row -> its sentence
        beams_encoded = encoded[:, rows]
        stream = self.model.decoder.stream(batch_size=batch * width)
        stream.state = (h_n[:, rows], c_n[:, rows])
        scores = np.full((batch, width), -np.inf)
        scores[:, 0] = 0.0  # every beam starts the same: keep one of them
        history = np.zeros((batch, width, 0), np.int64)
        best: list = [(-np.inf, None)] * batch
        previous = np.full(batch * width, task.bos, np.int64)
        for _ in range(max_steps):
            hidden = stream.step(self.model.target_embedding(previous))
            log_probs, _ = self._log_probs(hidden, beams_encoded, h_n[-1][rows])
            total = scores[..., None] + log_probs.reshape(batch, width, -1)  # (N, K, V+1)
            symbols = total.shape[-1]
            for n in range(batch):  # a finished hypothesis is kept when it beats the best so far
                finished = total[n, :, task.eos]
                k = int(finished.argmax())
                if finished[k] > best[n][0]:
                    best[n] = (float(finished[k]), history[n, k].copy())
            total[..., task.eos] = -np.inf
            flat = total.reshape(batch, -1)
            chosen = np.argsort(-flat, axis=1)[:, :width]  # (N, K)
            scores = np.take_along_axis(flat, chosen, axis=1)
            parent, symbol = chosen // symbols, chosen % symbols
            history = np.concatenate([np.take_along_axis(history, parent[..., None], axis=1),
                                      symbol[..., None]], axis=2)
            source_rows = (np.arange(batch)[:, None] * width + parent).reshape(-1)
            h, c = stream.state
            stream.state = (h[:, source_rows], c[:, source_rows])
            previous = symbol.reshape(-1)
            # Log-probabilities only fall: once every live beam is below the best finished
            # hypothesis, no later step can beat it.
            if all(scores[n].max() <= best[n][0] for n in range(batch)):
                break
        alive = history[np.arange(batch), scores.argmax(axis=1)]
        return [(b[1], True) if b[1] is not None else (alive[n], False) for n, b in enumerate(best)]


# ---------------------------------------------------------------- training and testing
@dataclass
class Seq2SeqConfig:
    task: str = "lexicon"
    vocab: int = 64
    min_length: int = 5
    max_length: int = 60
    embedding: int = 32
    hidden: int = 64
    score: str = "dot"
    steps: int = 1500
    batch: int = 32
    lr: float = 5e-3
    clip: float = 1.0
    test_size: int = 100
    beam: int = 1
    seed: int = 0
    progress: bool = True


@dataclass
class LengthScore:
    length: int
    examples: int
    exact_match: float
    token_accuracy: float
    teacher_forced: float  # token accuracy with the reference prefix fed, no decoding


@dataclass
class ModelResult:
    name: str
    parameters: int
    training: TrainingRecord = field(default_factory=TrainingRecord)
    scores: list = field(default_factory=list)  # [LengthScore]
    heat_map: tuple | None = None  # (source, output, weights) of one test sentence


def score_outputs(outputs: list, references: np.ndarray) -> tuple[float, float]:
    """(exact match, token accuracy) of decoded outputs against (L, N) reference translations."""
    exact, right = 0, 0
    length = references.shape[0]
    for n, (output, ended) in enumerate(outputs):
        common = min(len(output), length)  # without an EOS the first L symbols still count
        right += int((output[:common] == references[:common, n]).sum())
        exact += int(ended and np.array_equal(output, references[:, n]))
    return exact / len(outputs), right / (length * len(outputs))


def evaluate(model: Seq2Seq, test_set: dict[int, np.ndarray], beam: int) -> list[LengthScore]:
    translator = model.translator()
    scores = []
    for length, sources in test_set.items():
        references = model.task.translate(sources)
        max_steps = 2 * length + 1
        if beam > 1:
            outputs = translator.beam(sources, max_steps, beam)
        else:
            outputs, _ = translator.greedy(sources, max_steps)
        exact, tokens = score_outputs(outputs, references)
        bos = np.full((1, sources.shape[1]), model.task.bos, np.int64)
        forced = model.teacher_forced(sources, np.concatenate([bos, references]))[:length]
        scores.append(LengthScore(length, sources.shape[1], exact, tokens,
                                  float((forced == references).mean())))
    return scores


def heat_map(model: Seq2Seq, source: np.ndarray):
    """(source, output, weights (steps, L)) of one sentence decoded greedily with attention."""
    outputs, weights = model.translator().greedy(source[:, None], 2 * len(source) + 1)
    output, ended = outputs[0]
    steps = len(output) + 1 if ended else len(output)  # EOS's step included
    return source, (output, ended), weights[:steps, 0]


def run(config: Seq2SeqConfig) -> list[ModelResult]:
    """Train and test the model without attention, then with; stops after an interrupted one."""
    task = make_task(config.task, config.vocab, config.seed)
    lengths = test_lengths(config.min_length, config.max_length)
    test_set = make_test_set(task, lengths, config.test_size, config.seed)
    results = []
    for name, score in zip(MODELS, (None, config.score)):
        model = Seq2Seq(task, config.embedding, config.hidden, score, config.seed)
        batches = TrainingBatches(task, config.min_length, config.max_length, config.batch,
                                  test_set, config.seed)
        training = train(model.parameters(), lambda: model.loss_and_grads(*batches.next()),
                         config.steps, config.lr, config.clip, f"{name:>12}", config.progress)
        result = ModelResult(name, model.num_parameters(), training)
        if training.steps_done:
            result.scores = evaluate(model, test_set, config.beam)
            if score is not None:
                middle = lengths[len(lengths) // 2]
                result.heat_map = heat_map(model, test_set[middle][:, 0])
        results.append(result)
        if training.interrupted:
            break
    return results


# ---------------------------------------------------------------- output
TABLE_GROUPS = (("exact match", "exact_match"), ("token accuracy", "token_accuracy"),
                ("teacher-forced tokens", "teacher_forced"))


def format_table(results: list[ModelResult]) -> str:
    """Exact match, token accuracy and teacher-forced token accuracy per source length, the
    models side by side in each group."""
    done = [r for r in results if r.scores]
    width = 14 * len(done)
    lines = [f"{'':<7}" + "".join(f"  {title:^{width}}" for title, _ in TABLE_GROUPS),
             f"{'source':<7}" + "".join("  " + "".join(f"{r.name:>14}" for r in done) for _ in TABLE_GROUPS)]
    for i, row in enumerate(done[0].scores if done else []):
        cells = ["  " + "".join(f"{getattr(r.scores[i], key):>14.3f}" for r in done) for _, key in TABLE_GROUPS]
        lines.append(f"L={row.length:<5}" + "".join(cells))
    return "\n".join(lines)


def write_csv(results: list[ModelResult], path: str) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "source_length", "examples", "exact_match", "token_accuracy",
                         "teacher_forced_token_accuracy"])
        for r in results:
            for s in r.scores:
                writer.writerow([r.name, s.length, s.examples, f"{s.exact_match:.4f}", f"{s.token_accuracy:.4f}",
                                 f"{s.teacher_forced:.4f}"])


def plot_accuracy(results: list[ModelResult], config: Seq2SeqConfig, path: str) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for r in results:
        if not r.scores:
            continue
        lengths = [s.length for s in r.scores]
        left.plot(lengths, [s.exact_match for s in r.scores], marker="o", label=r.name)
        line, = right.plot(lengths, [s.token_accuracy for s in r.scores], marker="o", label=f"{r.name}, decoded")
        right.plot(lengths, [s.teacher_forced for s in r.scores], linestyle="--", color=line.get_color(),
                   label=f"{r.name}, teacher-forced")
    chance = 1.0 / config.vocab
    right.axhline(chance, color="gray", linestyle=":", label=f"chance (1/{config.vocab})")
    for axes, what in ((left, "exact match"), (right, "token accuracy")):
        axes.set_xlabel("source length")
        axes.set_title(f"{what} on held-out sentences")
        axes.set_ylim(-0.02, 1.02)
    left.set_ylabel("fraction")
    decoding = f"beam {config.beam}" if config.beam > 1 else "greedy"
    figure.suptitle(f"Encoder-decoder, {config.task} task: LSTM H={config.hidden}, "
                    f"{config.steps} steps each, {decoding} decoding", fontsize=10)
    save_plain_figure(plt, figure, (left, right), path)
    return True


def plot_heat_map(result: ModelResult, path: str) -> bool:
    plt = pyplot()
    if plt is None or result.heat_map is None:
        return False
    source, output, weights = result.heat_map
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(weights, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="attention weight")
    axes.set_xlabel(f"source position (length {len(source)})")
    emitted = f"{len(output[0])} symbols" + (" + EOS" if output[1] else ", no EOS")
    axes.set_ylabel(f"output step ({emitted})")
    axes.set_title("Attention weights of one held-out sentence")
    save_plain_figure(plt, figure, (axes,), path, legend=False)
    return True


# ---------------------------------------------------------------- the command
def register(subparsers: argparse._SubParsersAction) -> None:
    d = Seq2SeqConfig
    parser = subparsers.add_parser(
        "seq2seq", help="encoder-decoder with and without attention: accuracy vs source length",
        description="Train an LSTM encoder-decoder whose only context is the encoder's final state, "
                    "and the same model with attention over all encoder states, on a "
                    "translation-like task with sources of 5 to 60 symbols (same batches, steps "
                    "and seed); decode held-out sentences of each length step by step and report "
                    "exact match and token accuracy against source length. Writes a table, "
                    "a CSV and (with matplotlib) the curves and one attention heat map to --out.")
    parser.add_argument("--task", choices=TASKS, default=d.task,
                        help="lexicon: each symbol through a fixed lexicon; reorder: that, and "
                             "neighbours swapped; reverse: the source backwards (default "
                             f"{d.task})")
    parser.add_argument("--vocab", type=_cli.int_at_least(2), default=d.vocab,
                        help=f"symbols per language (default {d.vocab})")
    parser.add_argument("--min-length", type=_cli.int_at_least(1), default=d.min_length,
                        help=f"shortest source (default {d.min_length})")
    parser.add_argument("--max-length", type=_cli.int_at_least(1), default=d.max_length,
                        help=f"longest source (default {d.max_length})")
    parser.add_argument("--hidden", type=_cli.int_at_least(1), default=d.hidden,
                        help=f"LSTM hidden size of encoder and decoder (default {d.hidden})")
    parser.add_argument("--embedding", type=_cli.int_at_least(1), default=d.embedding,
                        help=f"embedding size (default {d.embedding})")
    parser.add_argument("--score", choices=SCORES, default=d.score,
                        help=f"attention score: dot (Luong) or additive (Bahdanau) (default {d.score})")
    add_training_options(parser, d, "sentences")
    parser.add_argument("--test-size", type=_cli.int_at_least(1), default=d.test_size,
                        help=f"held-out sentences per tested length (default {d.test_size})")
    parser.add_argument("--beam", type=_cli.int_at_least(1), default=d.beam,
                        help="beam width for decoding (default 1: greedy)")
    _cli.add_common(parser)
    parser.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    if args.min_length > args.max_length:
        return _cli.usage_error("rnncore seq2seq", f"--min-length {args.min_length} is above "
                                f"--max-length {args.max_length}")
    config = Seq2SeqConfig(task=args.task, vocab=args.vocab, min_length=args.min_length,
                           max_length=args.max_length, embedding=args.embedding, hidden=args.hidden,
                           score=args.score, steps=args.steps, batch=args.batch, lr=args.lr,
                           test_size=args.test_size, beam=args.beam, seed=args.seed,
                           progress=args.progress)
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before training, not after
    describe(config, args.threads)
    start = time.perf_counter()
    with _cli.threads(args.threads):
        results = run(config)
    report(results, config, args, time.perf_counter() - start)
    return _cli.INTERRUPTED if any(r.training.interrupted for r in results) else 0


def describe(config: Seq2SeqConfig, threads: int) -> None:
    task = make_task(config.task, config.vocab, config.seed)
    example = np.arange(6)[:, None] % config.vocab
    what = {"lexicon": "each symbol through a fixed lexicon",
            "reorder": "each symbol through a fixed lexicon, neighbours swapped",
            "reverse": "the source reversed"}[config.task]
    print(f"rnncore seq2seq: the encoder-decoder bottleneck (Cho et al. 2014) and attention "
          f"(Luong et al. 2015)")
    print(f"  task: {config.task}, {what}: {example[:, 0].tolist()} -> {task.translate(example)[:, 0].tolist()} "
          f"+ EOS; {config.vocab} symbols, sources of {config.min_length}-{config.max_length}")
    sizes = {name: Seq2Seq(task, config.embedding, config.hidden, score, 0).num_parameters()
             for name, score in zip(MODELS, (None, config.score))}
    print(f"  models: Embedding({config.embedding}) -> LSTM({config.hidden}) encoder -> LSTM({config.hidden}) "
          f"decoder -> tanh(Linear([context; h])) -> Linear; context = the encoder's final state "
          f"({sizes['no attention']} parameters) or {config.score} attention over all its states "
          f"({sizes['attention']})")
    decoding = f"beam-search (width {config.beam})" if config.beam > 1 else "greedy"
    print(f"  training: teacher forcing, {config.steps} steps of {config.batch} sentences (one length "
          f"per batch), Adam lr {config.lr:g}, clip {config.clip:g}, seed {config.seed}, "
          f"{threads} thread(s); the same batches for both")
    print(f"  test: {config.test_size} held-out sentences per length, {decoding} decoding (the encoder "
          f"prepared, the decoder an rnncore Stream, one step per symbol)", flush=True)


def report(results: list[ModelResult], config: Seq2SeqConfig, args: argparse.Namespace, seconds: float) -> None:
    print()
    for r in results:
        t = r.training
        state = f" (interrupted at step {t.steps_done} of {config.steps})" if t.interrupted else ""
        print(f"{r.name}: {r.parameters} parameters, training loss {t.first_loss:.3f} -> "
              f"{t.final_loss:.3f} nats/symbol in {t.seconds:.1f} s{state}")
    if any(r.training.interrupted for r in results):
        print("interrupted: results so far")
    print(format_table(results))
    csv_path = os.path.join(args.out, "seq2seq_accuracy.csv")
    write_csv(results, csv_path)
    png_path = os.path.join(args.out, "seq2seq_accuracy.png")
    heat_path = os.path.join(args.out, "seq2seq_attention.png")
    if not args.plot:
        print(f"accuracy by source length: {csv_path} (--no-plot)")
    elif plot_accuracy(results, config, png_path):
        print(f"accuracy by source length: {png_path} (data: {csv_path})")
        if plot_heat_map(results[-1], heat_path):
            print(f"attention weights of one test sentence: {heat_path}")
    else:
        print(f"accuracy by source length: {csv_path} (install matplotlib (pip install "
              f"'rnncore[plot]') for the PNGs)")
    print(f"total time {seconds:.0f} s")
    complete = [r for r in results if r.scores and not r.training.interrupted]
    if len(complete) == 2:
        print(summary(*complete))


def summary(plain: ModelResult, attended: ModelResult) -> str:
    """One sentence on what the curves show, from the numbers."""
    short, long = plain.scores[0], plain.scores[-1]
    a_short, a_long = attended.scores[0], attended.scores[-1]
    return (f"token accuracy from L={short.length} to L={long.length}: without attention "
            f"{short.token_accuracy:.2f} -> {long.token_accuracy:.2f} (teacher-forced "
            f"{short.teacher_forced:.2f} -> {long.teacher_forced:.2f}), with attention "
            f"{a_short.token_accuracy:.2f} -> {a_long.token_accuracy:.2f} (teacher-forced "
            f"{a_short.teacher_forced:.2f} -> {a_long.teacher_forced:.2f})")

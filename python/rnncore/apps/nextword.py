"""`rnncore nextword`: a word-level LSTM language model against unigram and bigram baselines.

The text is split into paragraphs, each lower-cased and cut into words (letters, with an
inner apostrophe), numbers and the punctuation . , ; : and ends with the token <eos>. Without
``--text`` the paragraphs are the docstrings of the Python standard library's modules, classes
and functions (read with ``ast`` from the sources on this machine): English prose every
machine with Python has. The last part of the token stream is held out; the vocabulary is the
words seen at least ``--min-count`` times in the rest, and every other word becomes <unk>.

The model is ``rnncore charlm``'s, over words: Embedding -> LSTM -> Linear, trained with the
same truncated BPTT (rnncore.charlm.train). It is scored by perplexity on the held-out tokens
(<unk> and <eos> count as words), beside two baselines fitted on the training tokens: the
unigram (add-one smoothed word frequencies) and the bigram with interpolated Kneser-Ney
smoothing (discount 0.75). For each ``--prompt`` the five most likely next words, from the
LSTM run one token at a time through rnncore's stream (state carried), and from the bigram.
"""

from __future__ import annotations

import argparse
import ast
import glob
import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .._cli import DEFAULT_OUT, INTERRUPTED, add_common, float_range, int_at_least
from .._cli import threads as kernel_threads
from .._plotting import files_line, log_scale_axes, save_figure
from .charlm import CharLM, CharLMConfig, TextError, read_text, split_text, train
from ..nn.losses import softmax

UNK, EOS = "<unk>", "<eos>"
TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[.,;:]")
DEFAULT_PROMPTS = ("the value of", "return a new", "if the file")


def tokenize(paragraph: str) -> list[str]:
    return TOKEN.findall(paragraph.lower())


def stdlib_docstrings(max_tokens: int) -> tuple[list[str], str]:
    """Tokens of the docstrings of the standard library's top-level modules (in name order,
    module, class and function docstrings as ``ast.walk`` meets them), up to ``max_tokens``;
    returns (tokens, label)."""
    folder = os.path.dirname(os.__file__)
    tokens: list[str] = []
    modules = 0
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
        try:
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue  # a trimmed or patched installation: use what parses
        modules += 1
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc:
                    tokens.extend(tokenize(doc))
                    tokens.append(EOS)
        if len(tokens) >= max_tokens:
            break
    if not tokens:
        raise TextError(f"no standard-library docstrings found in {folder}; pass --text FILE")
    return tokens[:max_tokens], f"the docstrings of {modules} Python standard-library modules in {folder}"


def text_tokens(path: str, max_tokens: int) -> tuple[list[str], str]:
    """Tokens of a UTF-8 file, paragraphs (blank-line separated) ending in <eos>."""
    text, label = read_text(path, 20 * max_tokens)  # ~5 characters a word, with room to spare
    tokens: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        words = tokenize(paragraph)
        if words:
            tokens.extend(words)
            tokens.append(EOS)
    return tokens[:max_tokens], label


class WordVocabulary:
    """<unk>, <eos> and the words seen at least ``min_count`` times, the most frequent first."""

    def __init__(self, tokens: list[str], min_count: int) -> None:
        counts = Counter(tokens)
        counts.pop(UNK, None)
        counts.pop(EOS, None)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        self.words = [UNK, EOS, *kept]
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, tokens: list[str]) -> np.ndarray:
        return np.fromiter((self.index.get(t, 0) for t in tokens), dtype=np.int64, count=len(tokens))


# ---------------------------------------------------------------- baselines
class Unigram:
    """Add-one smoothed word frequencies."""

    def __init__(self, ids: np.ndarray, vocab_size: int) -> None:
        counts = np.bincount(ids, minlength=vocab_size).astype(np.float64)
        self.probs = (counts + 1.0) / (counts.sum() + vocab_size)

    def perplexity(self, ids: np.ndarray) -> float:
        return float(np.exp(-np.mean(np.log(self.probs[ids[1:]]))))


class KneserNeyBigram:
    """Interpolated Kneser-Ney bigram: P(w|v) = max(c(v,w) - d, 0)/c(v) + d N(v.)/c(v) P_cont(w),
    where N(v.) is the number of distinct words after v and P_cont(w) the share of distinct
    bigrams ending in w (add-one smoothed, so that no word has probability 0); an unseen v
    falls back to P_cont."""

    def __init__(self, ids: np.ndarray, vocab_size: int, discount: float = 0.75) -> None:
        self.size = vocab_size
        self.discount = discount
        pairs, counts = np.unique(ids[:-1] * vocab_size + ids[1:], return_counts=True)
        self.pairs, self.counts = pairs, counts.astype(np.float64)
        first, second = pairs // vocab_size, pairs % vocab_size
        self.context = np.bincount(first, weights=self.counts, minlength=vocab_size)
        self.followers = np.bincount(first, minlength=vocab_size).astype(np.float64)
        preceding = np.bincount(second, minlength=vocab_size).astype(np.float64)
        self.continuation = (preceding + 1.0) / (len(pairs) + vocab_size)

    def _pair_counts(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        codes = prev * self.size + nxt
        where = np.minimum(np.searchsorted(self.pairs, codes), len(self.pairs) - 1)
        return np.where(self.pairs[where] == codes, self.counts[where], 0.0)

    def probability(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        seen = self.context[prev]
        safe = np.maximum(seen, 1.0)
        interpolated = (np.maximum(self._pair_counts(prev, nxt) - self.discount, 0.0) / safe
                        + self.discount * self.followers[prev] / safe * self.continuation[nxt])
        return np.where(seen > 0, interpolated, self.continuation[nxt])

    def next_distribution(self, prev: int) -> np.ndarray:
        every = np.arange(self.size)
        return self.probability(np.full(self.size, prev), every)

    def perplexity(self, ids: np.ndarray) -> float:
        return float(np.exp(-np.mean(np.log(self.probability(ids[:-1], ids[1:])))))


# ---------------------------------------------------------------- prompts
@dataclass
class Prediction:
    prompt: str
    unknown: list  # the prompt's words outside the vocabulary (read as <unk>)
    lstm: list  # [(word, probability)] * 5
    bigram: list


def top_words(probs: np.ndarray, vocab: WordVocabulary, k: int = 5) -> list:
    best = np.argsort(-probs, kind="stable")[:k]
    return [(vocab.words[i], float(probs[i])) for i in best]


def predict_next(model: CharLM, bigram: KneserNeyBigram, vocab: WordVocabulary, prompt: str) -> Prediction:
    """The LSTM reads <eos> (a paragraph starts) and the prompt's tokens one at a time through a
    stream, its state carried; then its softmax over the vocabulary, and the bigram's after the
    prompt's last token."""
    tokens = [EOS, *tokenize(prompt)]
    ids = [vocab.index.get(t, 0) for t in tokens]
    stream = model.lstm.stream(batch_size=1)
    hidden = None
    for i in ids:
        hidden = stream.step(model.embedding(i))
    probs = softmax(model.head(hidden).astype(np.float64))
    unknown = [t for t in tokens if t not in vocab.index]
    return Prediction(prompt, unknown, top_words(probs, vocab), top_words(bigram.next_distribution(ids[-1]), vocab))


def format_prediction(p: Prediction) -> list[str]:
    def words(pairs):
        return "  ".join(f"{w} {prob:.3f}" for w, prob in pairs)

    note = f" ({', '.join(p.unknown)} not in the vocabulary: read as <unk>)" if p.unknown else ""
    return [f'"{p.prompt}"{note}', f"  LSTM:   {words(p.lstm)}", f"  bigram: {words(p.bigram)}"]


# ---------------------------------------------------------------- output
def write_csv(curve: list, predictions: list, folder: str) -> tuple[str, str]:
    curve_path = os.path.join(folder, "nextword_curve.csv")
    with open(curve_path, "w", encoding="utf-8") as handle:
        handle.write("step,held_out_perplexity\n")
        handle.writelines(f"{step},{2.0 ** bits:.6g}\n" for step, bits in curve)
    words_path = os.path.join(folder, "nextword_top5.csv")
    with open(words_path, "w", encoding="utf-8") as handle:
        handle.write("prompt,model,rank,word,probability\n")
        for p in predictions:
            prompt = p.prompt.replace('"', '""')
            for model, pairs in (("lstm", p.lstm), ("bigram", p.bigram)):
                handle.writelines(f'"{prompt}",{model},{rank},{word},{prob:.6g}\n'
                                  for rank, (word, prob) in enumerate(pairs, 1))
    return curve_path, words_path


def plot_curve(curve: list, baselines: dict, title: str, path: str) -> bool:
    plot = log_scale_axes()
    if plot is None:
        return False
    plt, figure, axes = plot
    steps, bits = zip(*curve)
    axes.plot(steps, [2.0 ** b for b in bits], marker=".", label="LSTM")
    for (name, value), style in zip(baselines.items(), ("--", ":", "-.")):
        axes.axhline(value, color="gray", linestyle=style, label=f"{name} ({value:.0f})")
    axes.set_xlabel("training step")
    axes.set_ylabel("held-out perplexity")
    axes.set_title(title)
    save_figure(plt, figure, axes, path)
    return True


def verdict(lstm: float, bigram: float, unigram: float) -> str:
    if lstm < bigram:
        return (f"the LSTM's held-out perplexity is {100 * (1 - lstm / bigram):.0f}% below the bigram's "
                f"({lstm:.1f} vs {bigram:.1f}; unigram {unigram:.1f})")
    return (f"the LSTM does NOT beat the bigram: perplexity {lstm:.1f} vs {bigram:.1f} "
            f"(unigram {unigram:.1f}); train longer (--steps) or on more text")


def run(args: argparse.Namespace) -> int:
    os.makedirs(args.out, exist_ok=True)  # fail on a bad --out before training, not after
    if args.text is None:
        tokens, label = stdlib_docstrings(args.max_words)
    else:
        tokens, label = text_tokens(args.text, args.max_words)
    config = CharLMConfig(steps=args.steps, batch=args.batch, bptt=args.bptt, hidden=args.hidden,
                          embedding=args.embedding, lr=args.lr, seed=args.seed, eval_every=args.eval_every,
                          progress=args.progress, name="nextword", unit="bits/word")
    held = min(config.max_held_out, int(len(tokens) * config.held_out))
    vocab = WordVocabulary(tokens[:len(tokens) - held], args.min_count)
    ids = vocab.encode(tokens)
    train_ids, held_ids = split_text(ids, config)
    if len(train_ids) < 4 * args.batch or len(held_ids) < 2 or len(vocab) < 3:
        raise TextError(f"text too short: {len(tokens)} tokens, {len(vocab) - 2} words seen {args.min_count}+ "
                        "times (need a few thousand tokens)")
    model = CharLM(len(vocab), args.embedding, args.hidden, seed=args.seed)
    unk_share = float(np.mean(held_ids == 0))
    print(f"rnncore nextword: word-level LSTM language model on {label}")
    print(f"  {len(tokens)} tokens; vocabulary {len(vocab)} (words seen {args.min_count}+ times in the training "
          f"part, <unk>, <eos>); training on the first {len(train_ids)}, scoring the last {len(held_ids)} "
          f"({100 * unk_share:.1f}% of them <unk>)")
    print(f"  model: Embedding({len(vocab)}, {args.embedding}) -> LSTM({args.embedding}, {args.hidden}) -> "
          f"Linear({args.hidden}, {len(vocab)}), {model.num_parameters()} parameters")
    print(f"  truncated BPTT: {args.batch} streams x {args.bptt} tokens per step, state carried; Adam lr "
          f"{args.lr:g}, clip 1.0, {args.steps} steps, seed {args.seed}, {args.threads} thread(s)")
    print("  baselines on the same tokens: unigram (add-one), bigram (interpolated Kneser-Ney, d=0.75)",
          flush=True)
    unigram = Unigram(train_ids, len(vocab))
    bigram = KneserNeyBigram(train_ids, len(vocab))
    with kernel_threads(args.threads):
        result = train(model, train_ids, held_ids, config)
        predictions = [predict_next(model, bigram, vocab, prompt) for prompt in args.prompt or DEFAULT_PROMPTS]
    print()
    if result.interrupted:
        print(f"interrupted at step {result.steps_done} of {args.steps}: the model as it was then")
    perplexity = {"uniform": float(len(vocab)), "unigram (add-one)": unigram.perplexity(held_ids),
                  "bigram (Kneser-Ney)": bigram.perplexity(held_ids), "LSTM": 2.0 ** result.curve[-1][1]}
    speed = result.steps_done * args.batch * args.bptt / result.seconds if result.seconds else float("nan")
    print(f"{'model':<20} {'held-out perplexity':>19}")
    for name, value in perplexity.items():
        print(f"{name:<20} {value:>19.1f}")
    print(f"(LSTM after {result.steps_done} steps; training perplexity, running mean: "
          f"{2.0 ** result.train_loss:.1f}, first step {2.0 ** result.first_loss:.1f}; "
          f"{speed:,.0f} tokens/s trained)")
    print(verdict(perplexity["LSTM"], perplexity["bigram (Kneser-Ney)"], perplexity["unigram (add-one)"]))
    print("top 5 next words (probability):")
    for p in predictions:
        print("\n".join(format_prediction(p)))
    curve_csv, words_csv = write_csv(result.curve, predictions, args.out)
    png = os.path.join(args.out, "nextword_perplexity.png")
    baselines = {k: v for k, v in perplexity.items() if k in ("unigram (add-one)", "bigram (Kneser-Ney)")}
    title = f"Word-level LSTM (H={args.hidden}), held-out perplexity, vocabulary {len(vocab)}"
    wrote = args.plot and plot_curve(result.curve, baselines, title, png)
    print(files_line(wrote, args.plot, png, [curve_csv, words_csv]))
    return INTERRUPTED if result.interrupted else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nextword", help="word-level LSTM language model: perplexity vs unigram/bigram, next words",
        description="Train Embedding -> LSTM -> Linear on the words of a text with truncated BPTT, "
                    "report held-out perplexity beside unigram and Kneser-Ney bigram baselines, and "
                    "the five most likely next words after each --prompt. Without --text, uses the "
                    "docstrings of the Python standard library on this machine.")
    parser.add_argument("--text", metavar="FILE", help="a UTF-8 text file (default: Python stdlib docstrings)")
    parser.add_argument("--prompt", action="append", metavar="TEXT",
                        help="words to continue; repeat for several (default: "
                             + "; ".join(f'"{p}"' for p in DEFAULT_PROMPTS) + ")")
    parser.add_argument("--max-words", type=int_at_least(100), default=200_000,
                        help="use at most this many tokens (default 200000)")
    parser.add_argument("--min-count", type=int_at_least(1), default=3,
                        help="words seen fewer times in the training part become <unk> (default 3)")
    parser.add_argument("--steps", type=int_at_least(1), default=600, help="training steps (default 600)")
    parser.add_argument("--batch", type=int_at_least(1), default=32, help="parallel streams (default 32)")
    parser.add_argument("--bptt", type=int_at_least(1), default=32, help="tokens per chunk (default 32)")
    parser.add_argument("--hidden", type=int_at_least(1), default=128, help="LSTM hidden size (default 128)")
    parser.add_argument("--embedding", type=int_at_least(1), default=64, help="embedding size (default 64)")
    parser.add_argument("--lr", type=float_range(0.0), default=3e-3, help="Adam learning rate (default 0.003)")
    parser.add_argument("--eval-every", type=int_at_least(1), default=100,
                        help="steps between held-out evaluations (default 100)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="do not write the PNG")
    add_common(parser)
    parser.set_defaults(func=run)

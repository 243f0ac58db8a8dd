"""Seeded mutation fuzzing of the model-file reader (rnncore/io.h, the one implementation).

Every mutated file must get from the Python entry points (rnncore.io.read_file, rnncore.load,
model.load: Python reads the file, the C++ reader parses its bytes) a model or a clean
ModelFileError / OSError naming the file, and from the C++ path reader (rnncore::load_model,
bound as _core.read_model_file) a model or a clean ModelFileError; both must give the same
verdict, and where both accept, the same hyper-parameters and the same weights bit for bit. A
failed model.load must leave the model as it was.

The cases run in a child process, so that a crash or a hang in either reader fails the test with
the seed and the mutation that caused it instead of taking pytest down with it. By hand:
    python tests/test_io_fuzz.py --seed 1 --case 17        one case: its mutation and both verdicts
    python tests/test_io_fuzz.py --seed 2 --count 100000   a longer run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import rnncore as rc
from rnncore import _core
from rnncore import io as rc_io

SEED = 20261201
COUNT = 6000
HANG_SECONDS = 600  # the run takes ~4 s on a 2-core EPYC (2026-12); only a hang comes near this


# ---------------------------------------------------------------------- the files mutated
@dataclass
class Base:
    """A valid model file, and the model it holds (whose twin takes the model.load checks)."""
    name: str
    make: Callable[[int], Any]
    data: bytes = b""
    header: dict = field(default_factory=dict)
    buffer: bytes = b""

    def __post_init__(self):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "base.safetensors"
            self.make(1).save(path)
            self.data = path.read_bytes()
        n = int.from_bytes(self.data[:8], "little")
        self.header = json.loads(self.data[8:8 + n])
        self.buffer = self.data[8 + n:]


BASES = [
    Base("gru-2-3", lambda seed: rc.GRU(2, 3, seed=seed)),
    Base("lstm-1-2-x2-bidir-f64-nobias",
         lambda seed: rc.LSTM(1, 2, num_layers=2, bidirectional=True, bias=False, dtype=np.float64, seed=seed)),
    Base("rnn-relu-2-2-batch-first", lambda seed: rc.RNN(2, 2, nonlinearity="relu", batch_first=True, seed=seed)),
    Base("rnn-1-1-nobias", lambda seed: rc.RNN(1, 1, bias=False, seed=seed)),
]


class Raw:
    """JSON text written as is where a value goes (what json.dumps cannot write: -0, 5000 digits, NaN)."""

    def __init__(self, text: str):
        self.text = text


def header_text(header: Any, *, sort: bool = False, indent: int | None = None) -> bytes:
    raws: list[str] = []

    def placeholder(value):
        if not isinstance(value, Raw):
            raise TypeError(type(value))
        raws.append(value.text)
        return f"@@raw{len(raws) - 1}@@"

    text = json.dumps(header, separators=None if indent else (",", ":"), sort_keys=sort, indent=indent,
                      default=placeholder, ensure_ascii=False)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw)
    return text.encode("utf-8", "surrogatepass")


def assemble(text: bytes, buffer: bytes) -> bytes:
    return len(text).to_bytes(8, "little") + text + buffer


def copy_header(base: Base) -> dict:
    return json.loads(json.dumps(base.header))


def tensor_names(header: dict) -> list[str]:
    return [k for k in header if k != "__metadata__"]


# ---------------------------------------------------------------------- mutations
# Each takes (rng, base) and returns (file bytes, what was done); those of bytes alone take
# (rng, data), data being any bytes, and are wrapped by on_bytes.
INTEGERS = [0, 1, 2, 7, 2**31, 2**32 + 4, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 10**30, -1, -(2**63),
            Raw("-0"), Raw("1" * 25), Raw("9" * 5000), Raw("00"), Raw("1.0"), Raw("1e2"), Raw("-0.0"),
            Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), 1.5, True, None, "4", [], {}]
JSON_VALUES = [None, True, False, 0, 1, -1, "", "F32", [], [1], {}, {"dtype": "F32"}, Raw("-0"), 1.0]
DTYPES = ["F32", "F64", "F16", "BF16", "I32", "U8", "BOOL", "I64", "F8_E4M3", "f32", "Q7", "", "F32 ", 4, None,
          ["F32"]]
SIZE_TEXTS = ["0", "-1", "-0", "1", "01", "2", "3", "10000000", "999999999", "1000000000", "99999999999999999999",
              " 1", "1 ", "", "1e3", "0x10", "\uff11", "\u0661", "1.0", "+1"]
FLAG_TEXTS = ["true", "false", "True", "FALSE", "1", "0", "", "yes"]
TEXTS = ["x", "", "\u00e9", "\u4e2d\u6587", "\U0001f600", "\u0000", "a\nb", "rnncore", "lstm", "gru", "rnn_tanh",
         "rnn_relu", "1", "2"]
RAW_STRINGS = ['"\\ud800"', '"\\udc00x"', '"\\ud800\\u0041"', '"\\ud83d\\ude00"', '"\\x41"', '"\\u00"',
               '"\\u0077"', '"a\\/b"', '"\t"', '"\\u0000"']
NOISE = list('{}[]",:-0123456789.eE \t\n\\ntfurl') + ["\u00e9", "\U0001f600"]


def header_end(data: bytes) -> int:
    return min(8 + int.from_bytes(data[:8], "little"), len(data))


def flip_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    if not data:
        return data, "nothing to flip"
    end = header_end(data)
    data = bytearray(data)
    flips = []
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(end) if end and rng.random() < 0.6 else rng.randrange(len(data))
        mask = rng.choice([1 << rng.randrange(8), rng.randint(1, 255)])
        data[at] ^= mask
        flips.append((at, mask))
    return bytes(data), f"flip (byte, mask) {flips}"


def truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    cut = rng.randrange(len(data) + 1)
    return data[:cut], f"truncate to {cut} of {len(data)} bytes"


def grow_or_shrink_buffer(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    at = rng.randint(header_end(data), len(data))
    if rng.random() < 0.5 and at < len(data):
        k = rng.randint(1, 8)
        return data[:at] + data[at + k:], f"delete {k} buffer bytes at {at}"
    extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return data[:at] + extra + data[at:], f"insert {extra.hex()} at {at}"


def header_length(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    n = int.from_bytes(data[:8], "little")
    length = rng.choice([n + rng.randint(-9, 9), 0, 1, 2, 2**63, 2**64 - 1, 100 * 2**20, 100 * 2**20 + 1,
                         len(data), len(data) - 8, len(data) - 7])
    length = min(max(length, 0), 2**64 - 1)
    return length.to_bytes(8, "little") + data[8:], f"header length {length} (was {n})"


def on_bytes(mutation: Callable[[random.Random, bytes], tuple[bytes, str]]):
    def of_base(rng: random.Random, base: Base) -> tuple[bytes, str]:
        return mutation(rng, base.data)

    of_base.__name__ = mutation.__name__
    return of_base


def edit_entry_field(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    name = rng.choice(tensor_names(header))
    entry = header[name]
    field = rng.choice(["dtype", "shape", "shape", "data_offsets", "data_offsets"])
    if field == "dtype":
        entry["dtype"] = rng.choice(DTYPES)
    elif field == "shape":
        shape = list(entry["shape"])
        action = rng.choice(["set", "set", "append", "prepend", "drop", "reverse", "empty", "type"])
        if action == "set":
            shape[rng.randrange(len(shape))] = rng.choice(INTEGERS + [shape[0] + 1, shape[0] - 1])
        elif action in ("append", "prepend"):
            value = rng.choice([1, 1, 0, 2, 2**63, Raw("-0")])
            shape = shape + [value] if action == "append" else [value] + shape
        elif action == "drop":
            shape.pop(rng.randrange(len(shape)))
        elif action == "reverse":
            shape.reverse()
        elif action == "empty":
            shape = []
        else:
            shape = rng.choice(JSON_VALUES)
        entry["shape"] = shape
    else:
        begin, end = entry["data_offsets"]
        action = rng.choice(["begin", "end", "swap", "shift", "count", "type"])
        if action in ("begin", "end"):
            value = rng.choice(INTEGERS + [begin + 1, begin - 1, end + 1, end - 1, len(base.buffer)])
            entry["data_offsets"] = [value, end] if action == "begin" else [begin, value]
        elif action == "swap":
            entry["data_offsets"] = [end, begin]
        elif action == "shift":
            k = rng.randint(-8, 8)
            entry["data_offsets"] = [begin + k, end + k]
        elif action == "count":
            entry["data_offsets"] = rng.choice([[begin], [begin, end, end], [], [begin, Raw("-0")]])
        else:
            entry["data_offsets"] = rng.choice(JSON_VALUES)
    value = header_text(entry[field]).decode("utf-8", "replace")[:120]
    return assemble(header_text(header), base.buffer), f"{name}.{field} = {value}"


def edit_metadata(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    meta = header["__metadata__"]
    key = rng.choice(list(meta) + ["extra"])
    action = rng.choice(["set", "set", "set", "delete", "type", "extra", "whole"])
    if action == "set":
        if key in ("input_size", "hidden_size", "num_layers"):
            meta[key] = rng.choice(SIZE_TEXTS)
        elif key in ("bias", "bidirectional", "batch_first"):
            meta[key] = rng.choice(FLAG_TEXTS)
        else:
            meta[key] = rng.choice(TEXTS + ["safetensors", "rnncore", "1", "2", "1.0"])
    elif action == "delete":
        meta.pop(key, None)
    elif action == "type":
        meta[key] = rng.choice(JSON_VALUES)
    elif action == "extra":
        meta[rng.choice(TEXTS)] = rng.choice(TEXTS)
    else:
        header["__metadata__"] = rng.choice(JSON_VALUES)
    what = f"metadata {action} {key!r}: {header_text(header['__metadata__'])[:200]!r}"
    return assemble(header_text(header), base.buffer), what


def huge_model_claims(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    key = rng.choice(["num_layers", "num_layers", "hidden_size", "input_size"])
    header["__metadata__"][key] = rng.choice(["10000000", "999999999", "123456789", "65536"])
    return assemble(header_text(header), base.buffer), f"metadata {key} = {header['__metadata__'][key]}"


def remove_or_add_tensor(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    names = tensor_names(header)
    buffer = base.buffer
    if rng.random() < 0.5:
        name = rng.choice(names)
        begin, end = header.pop(name)["data_offsets"]
        if rng.random() < 0.7:  # and its bytes, so only the name is missing
            buffer = buffer[:begin] + buffer[end:]
            for other in tensor_names(header):
                b, e = header[other]["data_offsets"]
                if b >= end:
                    header[other]["data_offsets"] = [b - (end - begin), e - (end - begin)]
        return assemble(header_text(header), buffer), f"remove {name}"
    name = rng.choice(["weight_ih_l9", "bias_ih_l0_reverse", "weight_ih_l0 ", "Weight_ih_l0", "x", "", "__meta__",
                       "weight_hh_l1", "bias_hh_l0"])
    size = rng.choice([0, 4, 8, 12])
    header[name] = {"dtype": rng.choice(["F32", "F64", "U8"]), "shape": [size // 4] if size else [0],
                    "data_offsets": [len(buffer), len(buffer) + size]}
    if header[name]["dtype"] == "F64":
        header[name]["shape"] = [size // 8]
        size = size // 8 * 8
        header[name]["data_offsets"][1] = len(buffer) + size
    if header[name]["dtype"] == "U8":
        header[name]["shape"] = [size]
    return assemble(header_text(header), buffer + bytes(size)), f"add {name!r} {header[name]}"


def duplicate_key(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    where = rng.choice(["top", "entry", "metadata"])
    if where == "top":
        name = rng.choice(list(header))
        extra = f',{json.dumps(name)}:{header_text(header[name]).decode()}'
        text = header_text(header).decode()
        text = text[:-1] + extra + "}"
    else:
        obj = header["__metadata__"] if where == "metadata" else header[rng.choice(tensor_names(header))]
        key = rng.choice(list(obj))
        marker = "@@dup@@"
        obj[marker] = 0
        again = f"{json.dumps(key)}:{header_text(obj[key]).decode()}"
        text = header_text(header).decode().replace(f'"{marker}":0', again)
        where += f" {key}"
    return assemble(text.encode(), base.buffer), f"duplicate key in {where}"


def deep_nesting(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    depth = rng.choice([1, 2, 30, 31, 32, 33, 34, 100, 999, 1000, 5000])
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    nested = Raw(opener * depth + "0" + closer * depth)
    target = rng.choice(["top", "metadata", "entry", "shape"])
    if target == "top":
        header["nested"] = nested
    elif target == "metadata":
        header["__metadata__"]["nested"] = nested
    else:
        entry = header[rng.choice(tensor_names(header))]
        if target == "entry":
            entry["nested"] = nested
        else:
            entry["shape"] = [nested]
    return assemble(header_text(header), base.buffer), f"nesting {depth} {opener!r} in {target}"


def wrong_type(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    key = rng.choice(list(header))
    value = rng.choice(JSON_VALUES + [Raw("NaN")])
    if rng.random() < 0.5 or key == "__metadata__":
        header[key] = value
        what = key
    else:
        field = rng.choice(["dtype", "shape", "data_offsets"])
        header[key][field] = value
        what = f"{key}.{field}"
    if rng.random() < 0.1:
        not_an_object = rng.choice([[], "x", 1, None, Raw("[1, 2]")])
        return assemble(header_text(not_an_object), base.buffer), "a non-object header"
    return assemble(header_text(header), base.buffer), f"{what} = {header_text(value)!r}"


def unicode_edit(rng: random.Random, base: Base) -> tuple[bytes, str]:
    header = copy_header(base)
    text = header_text(header).decode()
    action = rng.choice(["escape_name", "raw_string", "raw_string", "bad_utf8", "escape_all"])
    if action == "escape_name":  # the same name spelled with escapes: still the same file
        name = rng.choice(tensor_names(header))
        i = rng.randrange(len(name))
        escaped = name[:i] + f"\\u{ord(name[i]):04x}" + name[i + 1:]
        text = text.replace(f'"{name}"', f'"{escaped}"', 1)
        return assemble(text.encode(), base.buffer), f"name {name} written {escaped}"
    if action == "escape_all":
        return assemble(json.dumps(header, ensure_ascii=True).encode(), base.buffer), "ensure_ascii"
    if action == "raw_string":
        raw = rng.choice(RAW_STRINGS)
        where = rng.choice(["meta_key", "meta_value", "name", "dtype"])
        if where == "meta_key":
            text = text.replace('"__metadata__":{', '"__metadata__":{' + raw + ':"1",', 1)
        elif where == "meta_value":
            text = text.replace('"__metadata__":{', '"__metadata__":{"note":' + raw + ",", 1)
        elif where == "name":
            name = rng.choice(tensor_names(header))
            text = text.replace(f'"{name}"', raw, 1)
        else:
            header[rng.choice(tensor_names(header))]["dtype"] = Raw(raw)
            text = header_text(header).decode()
        return assemble(text.encode("utf-8"), base.buffer), f"string {raw} as {where}"
    raw_bytes = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
                            b"\xef\xbb\xbf", b"\xc3\xa9", b"\x00", b"\x7f"])
    data = text.encode()
    at = rng.randrange(len(data) + 1)
    data = data[:at] + raw_bytes + data[at:]
    return assemble(data, base.buffer), f"bytes {raw_bytes.hex()} at header byte {at}"


def replace_integer(rng: random.Random, base: Base) -> tuple[bytes, str]:
    text = header_text(copy_header(base)).decode()
    spots = [i for i in range(len(text)) if text[i].isdigit() and text[i - 1] in "[,"]
    at = rng.choice(spots)
    end = at
    while text[end].isdigit():
        end += 1
    new = rng.choice(["-0", "-1", "00", "0.0", "1e0", "1E0", "18446744073709551615", "18446744073709551616",
                      "9223372036854775807", "9223372036854775808", "1" * 25, "1" * 5000, "NaN", "Infinity",
                      "-Infinity", "true", "null", '"4"', "0", "4", " 4 ", "4 ,4", "0x4", "+4", "- 0", "-"])
    text = text[:at] + new + text[end:]
    return assemble(text.encode(), base.buffer), f"integer at header byte {at} -> {new[:40]!r}"


def text_noise(rng: random.Random, base: Base) -> tuple[bytes, str]:
    text = header_text(copy_header(base)).decode()
    edits = []
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text))
        action = rng.choice(["insert", "delete", "replace"])
        char = rng.choice(NOISE)
        if action == "insert":
            text = text[:at] + char + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + char + text[at + 1:]
        edits.append((action, at, char))
    return assemble(text.encode(), base.buffer), f"text edits {edits}"


def reformat(rng: random.Random, base: Base) -> tuple[bytes, str]:
    """Valid rewritings: key order, whitespace, padding, tensors moved in the buffer, dtype."""
    header = copy_header(base)
    action = rng.choice(["sort", "indent", "pad", "permute", "dtype", "shuffle_keys"])
    buffer = base.buffer
    if action == "permute":
        names = tensor_names(header)
        rng.shuffle(names)
        chunks, at = [], 0
        for name in names:
            begin, end = header[name]["data_offsets"]
            chunks.append(base.buffer[begin:end])
            header[name]["data_offsets"] = [at, at + end - begin]
            at += end - begin
        buffer = b"".join(chunks)
    elif action == "dtype":  # the same weights in the other float type
        names = tensor_names(header)
        old = header[names[0]]["dtype"]
        new = "F64" if old == "F32" else "F32"
        chunks, at = [], 0
        for name in sorted(names, key=lambda k: header[k]["data_offsets"][0]):
            begin, end = header[name]["data_offsets"]
            values = np.frombuffer(base.buffer[begin:end], "<f4" if old == "F32" else "<f8")
            blob = values.astype("<f8" if new == "F64" else "<f4").tobytes()
            header[name].update(dtype=new, data_offsets=[at, at + len(blob)])
            chunks.append(blob)
            at += len(blob)
        buffer = b"".join(chunks)
    elif action == "shuffle_keys":
        items = list(header.items())
        rng.shuffle(items)
        header = dict(items)
    text = header_text(header, sort=action == "sort", indent=2 if action == "indent" else None)
    if action == "pad":
        text += rng.choice([b" ", b"\n", b"\t", b"\r\n", b"    "]) * rng.randint(1, 9)
    return assemble(text, buffer), f"reformat {action}"


def splice(rng: random.Random, base: Base) -> tuple[bytes, str]:
    other = rng.choice(BASES)
    n = int.from_bytes(base.data[:8], "little")
    return base.data[:8 + n] + other.buffer, f"header of {base.name} + buffer of {other.name}"


MUTATIONS = [on_bytes(flip_bytes), on_bytes(flip_bytes), on_bytes(truncate), on_bytes(grow_or_shrink_buffer),
             on_bytes(header_length), edit_entry_field, edit_entry_field, edit_metadata, edit_metadata,
             huge_model_claims, remove_or_add_tensor, duplicate_key, deep_nesting, wrong_type, unicode_edit,
             unicode_edit, replace_integer, replace_integer, text_noise, text_noise, reformat, reformat, splice]


def make_case(seed: int, case: int) -> tuple[Base, bytes, str]:
    """Case `case` of `seed`: the same file and description on every run and machine."""
    rng = random.Random(seed * 1_000_003 + case)
    base = rng.choice(BASES)
    mutation = rng.choice(MUTATIONS)
    data, what = mutation(rng, base)
    what = f"{mutation.__name__} of {base.name}: {what}"
    if rng.random() < 0.15:  # and a second, blind one on top
        second = rng.choice([flip_bytes, truncate, grow_or_shrink_buffer])
        data, more = second(rng, data)
        what += f"; then {second.__name__}: {more}"
    return base, data, what


# ---------------------------------------------------------------------- one case
class FuzzFailure(AssertionError):
    pass


@dataclass
class Verdict:
    error: str | None
    config: dict | None = None
    params: dict | None = None


def python_verdict(path: Path) -> Verdict:
    try:
        config, params = rc_io.read_file(path)
    except (rc.ModelFileError, OSError) as exc:
        return Verdict(f"{type(exc).__name__}: {exc}")
    return Verdict(None, config, params)


def cpp_verdict(path: Path) -> Verdict:
    try:
        config, params = _core.read_model_file(str(path), "float64")
    except rc.ModelFileError as exc:
        return Verdict(f"ModelFileError: {exc}")
    return Verdict(None, config, params)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a64 = np.ascontiguousarray(a, dtype=np.float64)
    b64 = np.ascontiguousarray(b, dtype=np.float64)
    return a64.shape == b64.shape and np.array_equal(a64.view(np.uint64), b64.view(np.uint64))


class CaseFile:
    """The one file every case is written to. Rewritten in place: opening it with O_TRUNC, as
    write_bytes does, makes ext4 flush it to disk each time (3 ms, most of the run)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def write(self, data: bytes) -> None:
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def close(self) -> None:
        os.close(self._fd)


def check_case(file: CaseFile, data: bytes, twin: Any, twin_state: dict) -> str:
    """Runs one file through every reader; returns "accept" or "reject", raises FuzzFailure."""
    file.write(data)
    path = file.path
    py, cpp = python_verdict(path), cpp_verdict(path)
    if (py.error is None) != (cpp.error is None):
        raise FuzzFailure(f"the readers disagree: Python {py.error or 'accepts'}; C++ {cpp.error or 'accepts'}")
    for error in (py.error, cpp.error):
        if error is not None and str(path) not in error:
            raise FuzzFailure(f"the error does not name the file: {error}")
    if py.error is None:
        ours = {k: v for k, v in py.config.items() if k not in ("dtype", "batch_first")}
        if ours != cpp.config:
            raise FuzzFailure(f"hyper-parameters differ: Python {py.config}, C++ {cpp.config}")
        if py.params.keys() != cpp.params.keys() or not all(same_bits(py.params[k], cpp.params[k]) for k in py.params):
            raise FuzzFailure("both readers accept, with different weights")
        loaded = rc.load(path)
        if not all(same_bits(loaded.parameters()[k], v) for k, v in py.params.items()):
            raise FuzzFailure("rnncore.load's weights differ from read_file's")
    check_load_into(path, twin, twin_state, py)
    return "reject" if py.error else "accept"


def check_load_into(path: Path, twin: Any, twin_state: dict, py: Verdict) -> None:
    try:
        twin.load(path)
    except (rc.ModelFileError, OSError):
        if not all(same_bits(twin.parameters()[k], v) for k, v in twin_state.items()):
            raise FuzzFailure("a failed model.load changed the model") from None
        return
    if py.error is not None:
        raise FuzzFailure(f"model.load accepts a file read_file refuses ({py.error})")
    if not all(same_bits(twin.parameters()[k], py.params[k].astype(twin.dtype)) for k in twin_state):
        raise FuzzFailure("model.load's weights differ from read_file's")
    twin.load_state_dict(twin_state)


def run(seed: int, cases: range, workdir: Path, verbose: bool = False) -> dict[str, dict[str, int]]:
    """The cases of one seed; returns {mutation: {"accept": n, "reject": n}}. Before each case the
    case is written to workdir/current-case.txt, so that the parent can name it if this dies."""
    twins = {base.name: base.make(2) for base in BASES}
    states = {name: {k: v.copy() for k, v in twin.parameters().items()} for name, twin in twins.items()}
    file = CaseFile(workdir / "fuzz.safetensors")
    tally: dict[str, dict[str, int]] = {}
    with open(workdir / "current-case.txt", "w") as current:
        for case in cases:
            base, data, what = make_case(seed, case)
            current.seek(0)
            current.write(f"seed {seed} case {case}: {what}\n")
            current.truncate()
            current.flush()
            try:
                verdict = check_case(file, data, twins[base.name], states[base.name])
            except FuzzFailure as exc:
                (workdir / "failing.safetensors").write_bytes(data)
                raise FuzzFailure(f"seed {seed} case {case} ({what}): {exc}") from None
            except Exception as exc:
                (workdir / "failing.safetensors").write_bytes(data)
                raise FuzzFailure(f"seed {seed} case {case} ({what}): {type(exc).__name__}: {exc}") from exc
            if verbose:
                print(f"case {case}: {what}\n  Python: {python_verdict(file.path).error or 'accepts'}\n"
                      f"  C++:    {cpp_verdict(file.path).error or 'accepts'}")
            kind = what.split(" ", 1)[0]
            tally.setdefault(kind, {"accept": 0, "reject": 0})[verdict] += 1
    file.close()
    return tally


# ---------------------------------------------------------------------- the test
def test_mutated_model_files_get_clean_and_identical_verdicts_from_both_readers(tmp_path):
    command = [sys.executable, __file__, "--seed", str(SEED), "--count", str(COUNT), "--workdir", str(tmp_path)]
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=HANG_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a reader hung (no answer in {HANG_SECONDS} s) on "
                             f"{(tmp_path / 'current-case.txt').read_text().strip()}") from None
    if child.returncode < 0:
        raise AssertionError(f"a reader crashed (signal {-child.returncode}) on "
                             f"{(tmp_path / 'current-case.txt').read_text().strip()}\n{child.stderr[-3000:]}")
    assert child.returncode == 0, child.stderr[-5000:]
    tally = json.loads(child.stdout.splitlines()[-1])
    # The run covered every mutation, and files both readers accept as well as refuse.
    assert set(tally) == {m.__name__ for m in MUTATIONS}
    assert sum(t["accept"] for t in tally.values()) > COUNT // 20
    assert sum(t["reject"] for t in tally.values()) > COUNT // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--count", type=int, default=COUNT)
    parser.add_argument("--case", type=int, help="run this one case and print both verdicts")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(os.environ.get("TMPDIR", "/tmp")) / f"rnncore-fuzz-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    cases = range(args.case, args.case + 1) if args.case is not None else range(args.count)
    start = time.perf_counter()
    try:
        tally = run(args.seed, cases, workdir, verbose=args.case is not None)
    except FuzzFailure as exc:
        print(f"{exc}\n(the file is {workdir / 'failing.safetensors'})", file=sys.stderr)
        sys.exit(1)
    print(f"{len(cases)} cases in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(json.dumps(tally))


if __name__ == "__main__":
    main()

"""Model files: `model.save(path)`, `rnncore.load(path)`, `model.load(path)`.

The format is safetensors (https://github.com/huggingface/safetensors), read and written here
with NumPy alone (the `safetensors` package is not needed, and reads these files too):

    [8 bytes]  header length n, unsigned little-endian
    [n bytes]  JSON: {"__metadata__": {...}, "weight_ih_l0": {"dtype": "F32", "shape": [G*H, I],
               "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
    [rest]     the tensors, raw little-endian, C order, PyTorch's names and shapes

`__metadata__` holds the hyper-parameters as strings: format = "rnncore", format_version = "1",
cell (rnn_tanh | rnn_relu | lstm | gru), input_size, hidden_size, num_layers, bias,
bidirectional, batch_first ("true" / "false"). Every tensor has the model's dtype (F32 or F64).
The C++ library (rnncore/io.h) reads and writes the same files, byte for byte.

Reading trusts nothing. A file that is missing or unreadable raises OSError (FileNotFoundError,
IsADirectoryError...); one that is too large, truncated, or whose header is malformed or does
not match its own hyper-parameters raises ModelFileError (a ValueError) naming the file and the
problem. Nothing is read past the end of the file, and a failed `model.load` leaves the model
as it was. The header JSON is what the safetensors reference reads (integers 0 ... 2**64 - 1, no
"-0", no lone surrogates, no duplicate keys), and this reader and the C++ one accept exactly the
same files (tests/test_io_fuzz.py). Time and memory are bounded by the file's size: the tensors
the hyper-parameters need are counted against those the header lists before any is named.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from . import _checks
from ._compiled import param_names
from ._core import ModelFileError

__all__ = ["save", "load", "read_file", "ModelFileError", "MAX_FILE_BYTES"]

FORMAT = "rnncore"
FORMAT_VERSION = "1"
MAX_FILE_BYTES = 2**31       # files larger than this are refused unless max_bytes says otherwise
MAX_HEADER_BYTES = 100 * 2**20
_DTYPE_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
_NUMPY_DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
# Element sizes of every safetensors dtype, so a file with another dtype is named correctly.
_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
                "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
# The C++ reader's limits: JSON integers are uint64, shape dimensions int64.
_MAX_JSON_INT = 2**64 - 1
_MAX_JSON_INT_DIGITS = len(str(_MAX_JSON_INT))
_MAX_DIMENSION = 2**63 - 1
_DIGITS_AS_ZEROS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))  # "0"-"9" -> "0", rest " "


# ---------------------------------------------------------------------- writing
def save(model: Any, path: str | os.PathLike) -> None:
    """Write `model` (RNN, LSTM or GRU) to `path`. Written to "<path>.tmp" first and renamed,
    so an interrupted save never leaves a half-written file at `path`."""
    path = os.fspath(path)
    params = model.parameters()
    names = param_names(model.num_layers, model.bidirectional, model.bias)
    dtype_name = _DTYPE_NAMES[model.dtype]
    header: dict[str, Any] = {"__metadata__": {
        "format": FORMAT, "format_version": FORMAT_VERSION, "cell": model.cell,
        "input_size": str(model.input_size), "hidden_size": str(model.hidden_size),
        "num_layers": str(model.num_layers), "bias": _bool_text(model.bias),
        "bidirectional": _bool_text(model.bidirectional), "batch_first": _bool_text(model.batch_first),
    }}
    blobs, offset = [], 0
    for name in names:
        blob = np.ascontiguousarray(params[name], dtype=_NUMPY_DTYPES[dtype_name]).tobytes()
        header[name] = {"dtype": dtype_name, "shape": list(params[name].shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # aligns the tensors to 8 bytes
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for blob in blobs:
                f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


# ---------------------------------------------------------------------- reading
def read_file(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and check a model file without building a model: (hyper-parameters, {name: array}).

    The hyper-parameters are a dict with cell, input_size, hidden_size, num_layers, bias,
    bidirectional, batch_first and dtype. Raises OSError or ModelFileError (see the module doc).
    """
    path = os.fspath(path)
    max_bytes = _checks.positive_int("max_bytes", max_bytes)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ModelFileError(f"{path}: file is {size} bytes, more than the limit of {max_bytes} "
                                 "(pass max_bytes= to allow larger files)")
        # One byte more than the size, to notice a file that grows while it is read (reading up to
        # max_bytes would allocate the whole limit, 2 GiB, for any file).
        data = f.read(size + 1)
    if len(data) > size:
        raise ModelFileError(f"{path}: the file grew while it was read")
    return _parse(data, path)


def _parse(data: bytes, path: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    def fail(problem: str) -> ModelFileError:
        return ModelFileError(f"{path}: {problem}")

    if len(data) < 8:
        raise fail(f"truncated: {len(data)} bytes, fewer than the 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise fail(f"header length {n} is absurd (limit {MAX_HEADER_BYTES})")
    if n > len(data) - 8:
        raise fail(f"truncated: the header says {n} bytes of JSON but only {len(data) - 8} follow")
    header = _parse_json(data[8:8 + n], fail)
    buffer = memoryview(data)[8 + n:]

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        raise fail('"__metadata__" is missing (not an rnncore model file?)')
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise fail("__metadata__ is not an object of strings")
    entries = {name: _parse_entry(name, value, len(buffer), fail) for name, value in header.items()}
    _check_tiling(entries, len(buffer), fail)
    config = _parse_metadata(metadata, fail)

    names = _expected_names(config, entries, fail)
    expected = _expected_shapes(config, names)
    unexpected = [name for name in entries if name not in expected]
    if unexpected:
        raise fail(f'unexpected tensor "{unexpected[0]}" for this {config["cell"]} model')
    dtypes = {entries[name][0] for name in names}
    for name in names:
        dtype, shape, _, _ = entries[name]
        if dtype not in _NUMPY_DTYPES:
            raise fail(f'tensor "{name}" has dtype {dtype}; rnncore reads F32 and F64')
        if shape != expected[name]:
            raise fail(f'tensor "{name}" has shape {list(shape)}, the hyper-parameters need {list(expected[name])}')
    if len(dtypes) > 1:
        raise fail(f"tensors of two dtypes ({' and '.join(sorted(dtypes))})")
    dtype_name = dtypes.pop()
    config["dtype"] = np.dtype(np.float32 if dtype_name == "F32" else np.float64)
    params = {}
    for name in names:
        _, shape, begin, end = entries[name]
        params[name] = np.frombuffer(buffer[begin:end], dtype=_NUMPY_DTYPES[dtype_name]).reshape(shape).astype(
            config["dtype"], copy=True)
    return config, params


def _parse_json(raw: bytes, fail) -> dict[str, Any]:
    # The JSON the C++ reader (and the safetensors reference) accepts, no more: no duplicate keys,
    # no lone surrogates, no fractions, no negative numbers, "-0" included (json.loads would read
    # it as 0; offsets and shapes are unsigned). Integers of 2**64 and more, which the C++ parser
    # refuses, fail the range checks of _parse_entry or a type check here.
    def no_duplicates(pairs):
        result = {}
        for key, value in pairs:
            if key in result:
                raise fail(f'bad header JSON: duplicate key "{key}"')
            for text in (key, value):
                if isinstance(text, str) and _has_lone_surrogate(text):
                    raise fail(f"bad header JSON: a lone surrogate in the string {ascii(text):.60}")
            result[key] = value
        return result

    def no_constant(name):
        raise fail(f"bad header JSON: {name} is not allowed")

    def no_float(text):
        raise fail(f"bad header JSON: the number {text:.40} is not an integer")

    def unsigned_int(text):
        if text.startswith("-"):
            raise fail(f"bad header JSON: negative numbers are not valid here (got {text:.40})")
        if len(text) > _MAX_JSON_INT_DIGITS or int(text) > _MAX_JSON_INT:
            raise fail(f"bad header JSON: integer too large ({len(text)} digits: {text:.30}...)")
        return int(text)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"the header is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.lstrip(" \t\r\n").startswith("{"):
        raise fail("the header is not a JSON object")
    # Checking each integer costs a Python call (a header of numbers parses 10x slower), so only a
    # header that may hold a negative or an over-long integer pays for it: one with a minus sign or
    # a run of more digits than 2**64 - 1 has (int() of thousands of digits is slow, or refused).
    digit_run = b"0" * (_MAX_JSON_INT_DIGITS + 1)
    exact = b"-" in raw or digit_run in raw.translate(_DIGITS_AS_ZEROS)
    try:
        header = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant,
                            parse_float=no_float, **({"parse_int": unsigned_int} if exact else {}))
    except json.JSONDecodeError as exc:
        raise fail(f"bad header JSON at byte {exc.pos} of the header: {exc.msg}") from None
    except RecursionError:
        raise fail("bad header JSON: nested too deeply") from None
    if not isinstance(header, dict):
        raise fail("the header is not a JSON object")
    return header


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _parse_entry(name: str, value: Any, buffer_size: int, fail) -> tuple[str, tuple[int, ...], int, int]:
    what = f'tensor "{name}"'
    if not isinstance(value, dict):
        raise fail(f"{what} is not a JSON object")
    unknown = set(value) - {"dtype", "shape", "data_offsets"}
    if unknown:
        raise fail(f'{what}: unknown field "{sorted(unknown)[0]}"')
    for key, kind in (("dtype", str), ("shape", list), ("data_offsets", list)):
        if key not in value:
            raise fail(f'{what}: "{key}" is missing')
        if not isinstance(value[key], kind):
            raise fail(f'{what}: "{key}" has the wrong JSON type')
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in _DTYPE_SIZES:
        raise fail(f'{what}: unknown dtype "{dtype}"')
    if not all(type(d) is int and 0 <= d <= _MAX_DIMENSION for d in shape):
        raise fail(f"{what}: shape must hold integers in 0 ... 2**63 - 1, got {shape!r:.80}")
    if len(offsets) != 2 or not all(type(o) is int and o >= 0 for o in offsets):
        raise fail(f"{what}: data_offsets must be two integers [begin, end]")
    begin, end = offsets
    if begin > end or end > buffer_size:
        raise fail(f"{what}: data_offsets [{begin}, {end}] out of range (the buffer holds {buffer_size} bytes)")
    need = _byte_count(_DTYPE_SIZES[dtype], shape, buffer_size)
    if end - begin != need:
        needs = f"need {need}" if need <= buffer_size else f"need more than the {buffer_size} the buffer holds"
        raise fail(f"{what}: {end - begin} bytes for shape {shape!r:.80} and dtype {dtype}, which {needs}")
    return dtype, tuple(shape), begin, end


def _byte_count(item_size: int, shape: list[int], limit: int) -> int:
    """item_size * prod(shape), or limit + 1 once it passes limit: a long shape of huge
    dimensions would otherwise cost time quadratic in its length."""
    if 0 in shape:
        return 0
    count = item_size
    for dimension in shape:
        count *= dimension
        if count > limit:
            return limit + 1
    return count


def _check_tiling(entries, buffer_size: int, fail) -> None:
    # The tensors must tile the buffer: no overlap, no hole, no bytes the header does not describe.
    at = 0
    for begin, end in sorted((e[2], e[3]) for e in entries.values()):
        if begin < at:
            raise fail(f"tensors overlap at byte {begin} of the buffer")
        if begin > at:
            raise fail(f"a hole in the buffer at byte {at}")
        at = end
    if at != buffer_size:
        raise fail(f"{buffer_size - at} bytes after the last tensor that no tensor describes")


def _parse_metadata(meta: dict[str, str], fail) -> dict[str, Any]:
    def text(key: str) -> str:
        if key not in meta:
            raise fail(f'metadata: "{key}" is missing (not an rnncore model file?)')
        return meta[key]

    def positive(key: str) -> int:
        value = text(key)
        # Digits only, at most 9: sizes stay far from overflow in any product below.
        if not (value.isascii() and value.isdigit() and len(value) <= 9 and int(value) > 0):
            raise fail(f'metadata: "{key}" = "{value:.40}" is not a positive integer')
        return int(value)

    def flag(key: str, default: bool | None = None) -> bool:
        if default is not None and key not in meta:
            return default
        value = text(key)
        if value not in ("true", "false"):
            raise fail(f'metadata: "{key}" = "{value:.40}" is not true or false')
        return value == "true"

    if text("format") != FORMAT:
        raise fail(f'metadata: format is "{text("format"):.40}", not "{FORMAT}"')
    if text("format_version") != FORMAT_VERSION:
        raise fail(f'metadata: format_version "{text("format_version"):.40}" is not one this version reads (1)')
    cell = text("cell")
    if cell not in _CELLS:
        raise fail(f'metadata: unknown cell "{cell:.40}"')
    return {
        "cell": cell, "input_size": positive("input_size"), "hidden_size": positive("hidden_size"),
        "num_layers": positive("num_layers"), "bias": flag("bias"), "bidirectional": flag("bidirectional"),
        "batch_first": flag("batch_first", default=False),
    }


def _expected_names(config: dict[str, Any], entries: dict[str, Any], fail) -> list[str]:
    """The tensor names the hyper-parameters need, listed only once their count is known to be
    no more than the file holds: a 1 kB header claiming ten million layers fails here, after
    len(entries) + 1 names, instead of after building ten million layers' worth."""
    per_layer = (2 if config["bidirectional"] else 1) * (4 if config["bias"] else 2)
    needed = config["num_layers"] * per_layer
    if needed > len(entries):
        # Names are layer-major, so the first len(entries) + 1 of them include one the file lacks.
        prefix = param_names(min(config["num_layers"], len(entries) // per_layer + 1),
                             config["bidirectional"], config["bias"])
        missing = next(name for name in prefix if name not in entries)
        raise fail(f'tensor "{missing}" is missing (num_layers = {config["num_layers"]} needs {needed} '
                   f"tensors, the file holds {len(entries)})")
    names = param_names(config["num_layers"], config["bidirectional"], config["bias"])
    missing = [name for name in names if name not in entries]
    if missing:
        raise fail(f'tensor "{missing[0]}" is missing')
    return names


def _expected_shapes(config: dict[str, Any], names: list[str]) -> dict[str, tuple[int, ...]]:
    gates = {"lstm": 4, "gru": 3}.get(config["cell"], 1)
    gh, hidden = gates * config["hidden_size"], config["hidden_size"]
    directions = 2 if config["bidirectional"] else 1
    shapes = {}
    for name in names:
        layer = int(name.split("_l")[1].split("_")[0])
        width = config["input_size"] if layer == 0 else directions * hidden
        shapes[name] = (gh, width) if name.startswith("weight_ih") else (gh, hidden) if name.startswith("weight_hh") else (gh,)
    return shapes


def load(path: str | os.PathLike, *, dtype: Any = None, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """A new model (RNN, LSTM or GRU) from a file written by `model.save` or the C++ library.
    dtype: None keeps the file's (float32 or float64); otherwise the parameters are converted."""
    from .layers import GRU, LSTM, RNN

    config, params = read_file(path, max_bytes=max_bytes)
    dtype = config["dtype"] if dtype is None else _checks.float_dtype("dtype", dtype)
    kwargs = dict(num_layers=config["num_layers"], bias=config["bias"], batch_first=config["batch_first"],
                  bidirectional=config["bidirectional"], dtype=dtype, seed=0)
    if config["cell"] == "lstm":
        model = LSTM(config["input_size"], config["hidden_size"], **kwargs)
    elif config["cell"] == "gru":
        model = GRU(config["input_size"], config["hidden_size"], **kwargs)
    else:
        model = RNN(config["input_size"], config["hidden_size"], nonlinearity=config["cell"][4:], **kwargs)
    model.load_state_dict(params)
    return model


def load_into(model: Any, path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Load a file's parameters into an existing model of the same kind and sizes (converted to
    its dtype). Everything is checked first: on any error the model is left as it was."""
    config, params = read_file(path, max_bytes=max_bytes)
    ours = {"cell": model.cell, "input_size": model.input_size, "hidden_size": model.hidden_size,
            "num_layers": model.num_layers, "bias": model.bias, "bidirectional": model.bidirectional}
    differ = [f"{key}={config[key]!r} (the model has {value!r})" for key, value in ours.items() if config[key] != value]
    if differ:
        raise ModelFileError(f"{os.fspath(path)}: holds another model: {', '.join(differ)}")
    model.load_state_dict(params)

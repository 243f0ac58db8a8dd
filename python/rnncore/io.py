"""Model files: `model.save(path)`, `rnncore.load(path)`, `model.load(path)`.

The format is safetensors (https://github.com/huggingface/safetensors), so the `safetensors`
package and PyTorch read these files too:

    [8 bytes]  header length n, unsigned little-endian
    [n bytes]  JSON: {"__metadata__": {...}, "weight_ih_l0": {"dtype": "F32", "shape": [G*H, I],
               "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8
    [rest]     the tensors, raw little-endian, C order, PyTorch's names and shapes

`__metadata__` holds the hyper-parameters as strings: format = "rnncore", format_version = "1",
cell (rnn_tanh | rnn_relu | lstm | gru), input_size, hidden_size, num_layers, bias,
bidirectional, batch_first ("true" / "false"). Every tensor has the model's dtype (F32 or F64).

One implementation reads and writes them: the C++ library's (rnncore/io.h, which C++ programs
use), called here through rnncore._core; this module opens, sizes and writes the files. It
returns a configuration and parameters and builds no model (rnncore.layers does).

Reading trusts nothing. A file that is missing or unreadable raises OSError (FileNotFoundError,
IsADirectoryError...); one that is too large, truncated, or whose header is malformed or does
not match its own hyper-parameters raises ModelFileError (a ValueError) naming the file and the
problem. Nothing is read past the end of the file, and a failed `model.load` leaves the model
as it was. The header JSON is what the safetensors reference reads (integers 0 ... 2**64 - 1, no
"-0", no lone surrogates, no duplicate keys); tests/test_io.py and tests/test_io_fuzz.py hold
the reader to that. Time and memory are bounded by the file's size: the tensors the
hyper-parameters need are counted against those the header lists before any is named.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np

from . import _checks, _core
from ._core import ModelFileError
from ._spec import param_names

__all__ = ["read", "read_file", "write_file", "StoredModel", "ModelFileError", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 2**31       # files larger than this are refused unless max_bytes says otherwise


class StoredModel(NamedTuple):
    """What a model file holds: the configuration (rnncore._core.ModelConfig), the stored dtype,
    the layers' batch_first flag and {name: array} in that dtype."""

    config: Any
    dtype: np.dtype
    batch_first: bool
    params: dict[str, np.ndarray]


# ---------------------------------------------------------------------- writing
def write_file(path: str | os.PathLike, config: Any, params: dict[str, np.ndarray], *,
               batch_first: bool = False) -> None:
    """Write a model's parameters (PyTorch's names, one float dtype) to `path`. Written to
    "<path>.tmp" first and renamed, so an interrupted write never leaves a half-written file."""
    path = os.fspath(path)
    weights = [params[name] for name in param_names(config.num_layers, config.bidirectional, config.bias)]
    data = _core.serialize_model(config, weights, bool(batch_first))
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


# ---------------------------------------------------------------------- reading
def read(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> StoredModel:
    """Read and check a model file without building a model. Raises OSError or ModelFileError
    (see the module doc)."""
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
    config, dtype, batch_first, params = _core.parse_model(data, path)
    return StoredModel(config, np.dtype(dtype), batch_first, params)


def read_file(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """read() as plain values: (hyper-parameters, {name: array}). The hyper-parameters are a dict
    with cell, input_size, hidden_size, num_layers, bias, bidirectional, batch_first and dtype."""
    stored = read(path, max_bytes=max_bytes)
    config = stored.config
    hyper = {"cell": config.cell, "input_size": config.input_size, "hidden_size": config.hidden_size,
             "num_layers": config.num_layers, "bias": config.bias, "bidirectional": config.bidirectional,
             "batch_first": stored.batch_first, "dtype": stored.dtype}
    return hyper, stored.params

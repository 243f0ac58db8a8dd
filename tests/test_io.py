"""Model files: save / load round trips, the C++ reader and writer, and broken files."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest

import rnncore as rc
from rnncore import _core
from rnncore._spec import param_names


def models():
    yield rc.RNN(3, 4, seed=1)
    yield rc.RNN(3, 4, nonlinearity="relu", num_layers=2, bias=False, dtype=np.float64, seed=2)
    yield rc.LSTM(3, 5, num_layers=2, bidirectional=True, seed=3)
    yield rc.GRU(2, 6, batch_first=True, dtype=np.float64, seed=4)


def assert_same_model(a, b):
    assert type(a) is type(b) and repr(a) == repr(b) and a.dtype == b.dtype
    assert a.state_dict().keys() == b.state_dict().keys()
    for name, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[name], value)


def cpp_bytes(model):
    names = param_names(model.num_layers, model.bidirectional, model.bias)
    return _core.serialize_model(model.config, [model.parameters()[n] for n in names], model.batch_first)


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.safetensors"
    rc.GRU(2, 3, seed=0).save(path)
    return path


@pytest.mark.parametrize("model", list(models()), ids=repr)
def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert_same_model(model, rc.load(path))
    rc.save(model, str(path))
    assert_same_model(model, rc.load(str(path)))
    assert not os.path.exists(str(path) + ".tmp")


@pytest.mark.parametrize("model", list(models()), ids=repr)
def test_cpp_writer_and_reader_agree_with_python(model, tmp_path):
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert path.read_bytes() == cpp_bytes(model)
    config, params = _core.read_model_file(str(path), model.dtype.name)
    assert config == {"cell": model.cell, "input_size": model.input_size, "hidden_size": model.hidden_size,
                      "num_layers": model.num_layers, "bias": model.bias, "bidirectional": model.bidirectional}
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(params[name], value)


def test_file_layout_is_documented_safetensors(small_file):
    data = small_file.read_bytes()
    n = int.from_bytes(data[:8], "little")
    assert (8 + n) % 8 == 0
    header = json.loads(data[8:8 + n])
    assert header["__metadata__"]["cell"] == "gru" and header["__metadata__"]["hidden_size"] == "3"
    entry = header["weight_hh_l0"]
    assert entry["dtype"] == "F32" and entry["shape"] == [9, 3]
    begin, end = entry["data_offsets"]
    stored = np.frombuffer(data[8 + n + begin:8 + n + end], "<f4").reshape(9, 3)
    np.testing.assert_array_equal(stored, rc.load(small_file).parameters()["weight_hh_l0"])


def test_safetensors_package_reads_our_files(small_file):
    numpy_backend = pytest.importorskip("safetensors.numpy")
    tensors = numpy_backend.load_file(str(small_file))
    np.testing.assert_array_equal(tensors["weight_ih_l0"], rc.load(small_file).parameters()["weight_ih_l0"])


def test_loaded_model_streams(tmp_path):
    model = rc.LSTM(2, 8, num_layers=2, seed=5)
    model.save(tmp_path / "m.safetensors")
    x = np.random.default_rng(0).standard_normal((6, 2)).astype(np.float32)
    np.testing.assert_array_equal(rc.load(tmp_path / "m.safetensors").stream().step_many(x), model.stream().step_many(x))


def test_load_dtype_conversion_and_load_into(tmp_path):
    model = rc.GRU(2, 3, dtype=np.float64, seed=6)
    model.save(tmp_path / "m.safetensors")
    as32 = rc.load(tmp_path / "m.safetensors", dtype=np.float32)
    assert as32.dtype == np.float32
    target = rc.GRU(2, 3, seed=7)
    target.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(target.parameters()["weight_ih_l0"], as32.parameters()["weight_ih_l0"])


def test_failed_load_leaves_the_model_untouched(tmp_path, small_file):
    target = rc.GRU(2, 3, seed=9)
    before = target.state_dict()
    arrays = target.parameters()
    data = small_file.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    (tmp_path / "cut.safetensors").write_bytes(data[:-1])
    rc.LSTM(2, 3).save(tmp_path / "lstm.safetensors")
    # The same GRU's file, but for one thing the reader refuses once it has parsed everything else.
    wider = json.loads(json.dumps(header))
    wider["__metadata__"]["num_layers"] = "10000000"
    write_file(tmp_path / "layers.safetensors", wider, data[8 + n:])
    write_file(tmp_path / "minus_zero.safetensors", None, data[8 + n:],
               raw=json.dumps(header).replace('"data_offsets": [0, ', '"data_offsets": [-0, ').encode())
    for path, error, message in ((tmp_path / "cut.safetensors", rc.ModelFileError, "truncated|bytes"),
                                 (tmp_path / "lstm.safetensors", rc.ModelFileError, "another model: cell='lstm'"),
                                 (tmp_path / "layers.safetensors", rc.ModelFileError, "weight_ih_l1\" is missing"),
                                 (tmp_path / "minus_zero.safetensors", rc.ModelFileError, "negative numbers"),
                                 (tmp_path / "missing.safetensors", FileNotFoundError, "missing")):
        with pytest.raises(error, match=message):
            target.load(path)
        for name, value in before.items():
            assert target.parameters()[name] is arrays[name]
            np.testing.assert_array_equal(target.parameters()[name], value)


def test_missing_directory_and_oversized_files(tmp_path, small_file):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        rc.load(tmp_path / "nope.safetensors")
    with pytest.raises(OSError):
        rc.load(tmp_path)
    with pytest.raises(rc.ModelFileError, match=r"small.safetensors: file is \d+ bytes, more than the limit of 100"):
        rc.load(small_file, max_bytes=100)
    with pytest.raises(rc.ModelFileError, match="more than the limit"):
        _core.read_model_file(str(small_file), "float32", 100)
    with pytest.raises(rc.ModelFileError, match="no such file"):
        _core.read_model_file(str(tmp_path / "nope.safetensors"))
    assert issubclass(rc.ModelFileError, ValueError)


def load_errors(path):
    """The errors of rnncore.load and of the C++ path reader, _core.read_model_file (None where
    one accepted the file): the one reader through both of its entry points."""
    errors = []
    for reader in (rc.load, lambda p: _core.read_model_file(str(p))):
        try:
            reader(path)
            errors.append(None)
        except rc.ModelFileError as exc:
            assert str(path) in str(exc)
            errors.append(str(exc))
    return errors


def test_truncation_at_every_byte_is_an_error_in_both_readers(tmp_path, small_file):
    data = small_file.read_bytes()
    path = tmp_path / "cut.safetensors"
    for n in range(len(data)):
        path.write_bytes(data[:n])
        python_error, cpp_error = load_errors(path)
        assert python_error and cpp_error, n


def test_flipped_header_bytes_never_crash_and_readers_agree(tmp_path, small_file):
    data = small_file.read_bytes()
    n = int.from_bytes(data[:8], "little")
    path = tmp_path / "flipped.safetensors"
    for at in range(8 + n):
        for mask in (0x01, 0x20, 0x80):
            bad = bytearray(data)
            bad[at] ^= mask
            path.write_bytes(bytes(bad))
            python_error, cpp_error = load_errors(path)
            # Both accept (a flip inside the space padding) or both refuse.
            assert (python_error is None) == (cpp_error is None), (at, mask, python_error, cpp_error)


def write_file(path, header, buffer=b"\0" * 8, raw=None):
    text = raw if raw is not None else json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + buffer)
    return path


META = {"format": "rnncore", "format_version": "1", "cell": "rnn_tanh", "input_size": "1", "hidden_size": "1",
        "num_layers": "1", "bias": "false", "bidirectional": "false"}
IH = {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}
HH = {"dtype": "F32", "shape": [1, 1], "data_offsets": [4, 8]}


def tensors(ih=IH, hh=HH, meta=META):
    return {"__metadata__": meta, "weight_ih_l0": ih, "weight_hh_l0": hh}


@pytest.mark.parametrize(
    "header, buffer, raw, message",
    [
        (None, b"", b'{"a":', "bad header JSON"),
        (None, b"", b"[1, 2]", "not a JSON object"),
        (None, b"", b'{"a": 1, "a": 2}', "duplicate key"),
        (None, b"", b'{"a": NaN}', "bad header JSON"),
        (None, b"", b"{\"a\": " + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        (None, b"", b"{\"a\": \xff}", "not UTF-8|bad header JSON"),
        (tensors(hh=IH), b"\0" * 8, None, "overlap"),
        (tensors(hh={**HH, "data_offsets": [4, 12]}), b"\0" * 8, None, "out of range"),
        (tensors(hh={**HH, "data_offsets": [8, 4]}), b"\0" * 8, None, "out of range"),
        (tensors(hh={**HH, "dtype": "I32"}), b"\0" * 8, None, "dtype I32"),
        (tensors(hh={**HH, "dtype": "Q7"}), b"\0" * 8, None, "unknown dtype"),
        (tensors(hh={**HH, "shape": [2], "data_offsets": [4, 12]}), b"\0" * 12, None, r"shape \[2\]"),
        (tensors(hh={**HH, "shape": [1, 2]}), b"\0" * 8, None, "which need 8"),
        (tensors(hh={**HH, "shape": [1.5]}), b"\0" * 8, None, "integer"),
        (tensors(), b"\0" * 12, None, "no tensor describes"),
        ({"__metadata__": META, "weight_ih_l0": IH}, b"\0" * 4, None, '"weight_hh_l0" is missing'),
        ({"weight_ih_l0": IH, "weight_hh_l0": HH}, b"\0" * 8, None, "not an rnncore model file"),
        (tensors(meta={**META, "hidden_size": "x"}), b"\0" * 8, None, "not a positive integer"),
        (tensors(meta={**META, "hidden_size": "99999999999999999999"}), b"\0" * 8, None, "not a positive integer"),
        (tensors(meta={**META, "cell": "transformer"}), b"\0" * 8, None, "unknown cell"),
        (tensors(meta={**META, "format_version": "9"}), b"\0" * 8, None, "format_version"),
        (tensors(meta={**META, "bias": "yes"}), b"\0" * 8, None, "not true or false"),
        ({**tensors(), "weight_ih_l1": {**IH, "data_offsets": [8, 12]}}, b"\0" * 12, None, "unexpected tensor"),
    ],
)
def test_tampered_files_give_clear_errors_in_both_readers(tmp_path, header, buffer, raw, message):
    path = write_file(tmp_path / "bad.safetensors", header, buffer, raw)
    python_error, cpp_error = load_errors(path)
    assert python_error is not None and cpp_error is not None
    import re
    assert re.search(message, python_error), python_error
    assert re.search(message, cpp_error), cpp_error


def test_absurd_and_overlong_header_lengths(tmp_path):
    path = tmp_path / "bad.safetensors"
    good = json.dumps(tensors()).encode()
    path.write_bytes((2**62).to_bytes(8, "little") + good + b"\0" * 8)
    assert all("is absurd" in e for e in load_errors(path))
    path.write_bytes((len(good) + 9).to_bytes(8, "little") + good + b"\0" * 8)
    assert all("truncated" in e for e in load_errors(path))
    write_file(path, tensors())
    assert load_errors(path) == [None, None]


def test_a_header_claiming_ten_million_layers_fails_before_listing_them(tmp_path):
    # 300 bytes that once took a minute and 4 GB in rnncore.load (the C++ reader 8 s and 2.4 GB):
    # the names and shapes of every claimed layer were listed before the first was looked up. The
    # C++ reader's memory is checked in tests/cpp/test_io.cpp.
    path = write_file(tmp_path / "layers.safetensors", tensors(meta={**META, "num_layers": "10000000"}))
    tracemalloc.start()
    try:
        with pytest.raises(rc.ModelFileError):
            rc.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20
    for error in load_errors(path):
        assert 'tensor "weight_ih_l1" is missing (num_layers = 10000000 needs 20000000 tensors, the file holds 2)' in error


@pytest.mark.parametrize("where", ["shape", "data_offsets", "metadata", "top level"])
def test_integers_of_thousands_of_digits_are_model_file_errors_in_both_readers(tmp_path, where):
    # Python's int() refuses more than 4300 digits with a ValueError that escaped without the file name.
    text = json.dumps(tensors())
    huge = "1" * 5000
    text = {"shape": text.replace('"shape": [1, 1]', f'"shape": [1, {huge}]', 1),
            "data_offsets": text.replace('"data_offsets": [4, 8]', f'"data_offsets": [4, {huge}]'),
            "metadata": text.replace('"__metadata__": {', f'"__metadata__": {{"note": {huge}, ', 1),
            "top level": text[:-1] + f', "x": {huge}}}'}[where]
    path = write_file(tmp_path / "huge.safetensors", None, raw=text.encode())
    python_error, cpp_error = load_errors(path)
    assert "integer too large" in python_error and "integer too large" in cpp_error


def test_minus_zero_is_refused_by_both_readers(tmp_path):
    # Offsets are unsigned: the C++ reader refused -0; the Python reader read it as 0 and accepted the file.
    text = json.dumps(tensors()).replace('"data_offsets": [0, 4]', '"data_offsets": [-0, 4]')
    path = write_file(tmp_path / "m.safetensors", None, raw=text.encode())
    assert all("negative numbers are not valid here" in error for error in load_errors(path))
    # A minus sign in a string is text.
    write_file(path, tensors(meta={**META, "note": "-0 and -1"}))
    assert load_errors(path) == [None, None]


@pytest.mark.parametrize("string", ["\\ud800", "\\udc00", "\\ud800\\u0041", "x\\udbff"])
@pytest.mark.parametrize("where", ["key", "value"])
def test_lone_surrogates_are_refused_by_both_readers(tmp_path, string, where):
    # The C++ reader refused them; the Python reader accepted them in extra metadata.
    entry = f'"{string}": "1"' if where == "key" else f'"note": "{string}"'
    text = json.dumps(tensors()).replace('"__metadata__": {', '"__metadata__": {' + entry + ", ", 1)
    path = write_file(tmp_path / "m.safetensors", None, raw=text.encode())
    python_error, cpp_error = load_errors(path)
    assert "surrogate" in python_error and "surrogate" in cpp_error
    # A pair is one character.
    text = json.dumps(tensors(meta={**META, "note": "\U0001f600"}), ensure_ascii=True)
    assert "\\ud83d\\ude00" in text
    write_file(path, None, raw=text.encode())
    assert load_errors(path) == [None, None]


@pytest.mark.parametrize("raw", ['{"a": \u00e9}', '{"a": "\\\u00e9"}', '{"\u00e9": 1}', '{"a": "\u00e9" 1}'])
def test_non_ascii_in_a_broken_header_is_a_model_file_error_in_both_readers(tmp_path, raw):
    # The C++ reader quoted a lone byte of a multi-byte character in its message, which pybind11
    # could not decode: Python saw UnicodeDecodeError instead of ModelFileError.
    path = write_file(tmp_path / "m.safetensors", None, raw=raw.encode())
    assert all(error is not None for error in load_errors(path))


def test_safetensors_refuses_what_both_readers_refuse(tmp_path):
    # The choices above are the reference implementation's too.
    numpy_backend = pytest.importorskip("safetensors.numpy")
    text = json.dumps(tensors())
    for bad in (text.replace('"data_offsets": [0, 4]', '"data_offsets": [-0, 4]'),
                text.replace('"__metadata__": {', '"__metadata__": {"note": "\\ud800", ', 1)):
        path = write_file(tmp_path / "m.safetensors", None, raw=bad.encode())
        assert all(error is not None for error in load_errors(path))
        with pytest.raises(Exception, match="Error while deserializing header"):
            numpy_backend.load_file(str(path))


def test_pytorch_loads_our_files_through_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = rc.LSTM(3, 8, num_layers=2, seed=0)
    model.save(tmp_path / "m.safetensors")
    reference = torch.nn.LSTM(3, 8, num_layers=2)
    reference.load_state_dict(safetensors_torch.load_file(str(tmp_path / "m.safetensors")))
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(x))
    np.testing.assert_allclose(model(x)[0], expected.numpy(), atol=1e-6)

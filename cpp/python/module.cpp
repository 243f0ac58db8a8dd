// rnncore._core: the thin pybind11 layer. The Python package validates arguments and builds
// friendly messages; this layer checks every shape, dtype and layout again (cheaply) so that no
// caller can make the kernels read or write out of bounds, then releases the GIL and runs them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "rnncore/checked.h"
#include "rnncore/cuda.h"
#include "rnncore/io.h"
#include "rnncore/memory.h"
#include "rnncore/model.h"
#include "rnncore/sequence.h"
#include "rnncore/stream.h"
#include "rnncore/thread_plan.h"
#include "thread_policy.h"

namespace py = pybind11;
using rnncore::CellKind;
using rnncore::ModelConfig;

namespace {

std::string shape_string(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << (shape.size() == 1 ? ",)" : ")");
  return s.str();
}

// Returns the data of `a` after checking dtype, C order and the exact shape.
template <typename S>
const S* checked(const py::array& a, const std::string& name, const std::vector<int64_t>& shape) {
  if (!a.dtype().is(py::dtype::of<S>())) {
    throw py::type_error(name + ": expected dtype " + std::string(py::str(py::dtype::of<S>())) +
                         ", got " + std::string(py::str(a.dtype())));
  }
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(name + ": expected a C-contiguous array");
  }
  bool same = a.ndim() == static_cast<py::ssize_t>(shape.size());
  for (std::size_t i = 0; same && i < shape.size(); ++i) same = a.shape(i) == shape[i];
  if (!same) {
    throw py::value_error(name + ": expected shape " + shape_string(shape) + ", got " +
                          shape_string(a));
  }
  return static_cast<const S*>(a.data());
}

template <typename S>
const S* checked_optional(const py::object& o, const std::string& name,
                          const std::vector<int64_t>& shape) {
  if (o.is_none()) return nullptr;
  return checked<S>(py::cast<py::array>(o), name, shape);
}

ModelConfig checked_config(CellKind cell, int64_t input_size, int64_t hidden_size,
                           int64_t num_layers, bool bidirectional, bool bias) {
  ModelConfig c;
  c.cell = cell;
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  c.num_layers = num_layers;
  c.bidirectional = bidirectional;
  c.bias = bias;
  c.validate();
  return c;
}

// The stream and planning entry points still take the cell as its int code (CellKind).
ModelConfig make_config(int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                        bool bidirectional, bool bias) {
  if (cell < 0 || cell > 3) throw py::value_error("cell: expected 0..3, got " + std::to_string(cell));
  return checked_config(static_cast<CellKind>(cell), input_size, hidden_size, num_layers,
                        bidirectional, bias);
}

CellKind cell_named(const std::string& cell) {
  try {
    return rnncore::cell_from_name(cell);
  } catch (const std::invalid_argument&) {
    const std::string shown = cell.size() > 40 ? cell.substr(0, 40) + "..." : cell;
    throw py::value_error("cell: expected one of 'rnn_tanh', 'rnn_relu', 'lstm', 'gru', got '" + shown + "'");
  }
}

// ModelConfig(cell name, ...): how rnncore.layers builds a model's configuration.
ModelConfig named_config(const std::string& cell, int64_t input_size, int64_t hidden_size,
                         int64_t num_layers, bool bidirectional, bool bias) {
  return checked_config(cell_named(cell), input_size, hidden_size, num_layers, bidirectional, bias);
}

// weights: per (layer, direction) [w_ih, w_hh] and, with bias, [b_ih, b_hh].
template <typename S>
std::vector<rnncore::DirectionWeights<S>> checked_weights(const ModelConfig& c,
                                                          const std::vector<py::array>& arrays) {
  const int64_t per = c.bias ? 4 : 2, slots = c.num_layers * c.directions();
  if (static_cast<int64_t>(arrays.size()) != per * slots) {
    throw py::value_error("weights: expected " + std::to_string(per * slots) + " arrays, got " +
                          std::to_string(arrays.size()));
  }
  const int64_t gh = c.gates() * c.hidden_size;
  std::vector<rnncore::DirectionWeights<S>> w(static_cast<std::size_t>(slots));
  for (int64_t slot = 0; slot < slots; ++slot) {
    const int64_t k = slot / c.directions();
    const std::string at = "weights[" + std::to_string(slot * per);
    const py::array* a = &arrays[static_cast<std::size_t>(slot * per)];
    w[slot].w_ih = checked<S>(a[0], at + "] (w_ih)", {gh, c.layer_input_size(k)});
    w[slot].w_hh = checked<S>(a[1], at + "+1] (w_hh)", {gh, c.hidden_size});
    if (c.bias) {
      w[slot].b_ih = checked<S>(a[2], at + "+2] (b_ih)", {gh});
      w[slot].b_hh = checked<S>(a[3], at + "+3] (b_hh)", {gh});
    }
  }
  return w;
}

// Output arrays come from the workspace pool (memory.h), so that a training loop that drops its
// previous step's outputs gets their pages back warm instead of faulting fresh ones in.
template <typename S>
py::array_t<S> empty(const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count = rnncore::checked_mul(count, d, "an output array's shape");
  const std::size_t elements = rnncore::checked_elements<S>(count, "an output array");
  void* block = rnncore::memory::allocate(std::max<std::size_t>(elements, 1) * sizeof(S));
  py::capsule owner;
  try {
    owner = py::capsule(block, [](void* p) { rnncore::memory::release(p); });
  } catch (...) {
    rnncore::memory::release(block);
    throw;
  }
  return py::array_t<S>(std::vector<py::ssize_t>(shape.begin(), shape.end()), static_cast<S*>(block),
                        owner);
}

// The arrays of one forward call, checked against the model's configuration, and its outputs.
template <typename S>
struct ForwardCall {
  int64_t T = 0, N = 0;
  const S* x = nullptr;
  const S* h0 = nullptr;
  const S* c0 = nullptr;
  const int64_t* lengths = nullptr;
  py::array_t<S> y, h_n;
  py::object c_n = py::none();
  S* c_n_data = nullptr;

  ForwardCall(const ModelConfig& c, const py::array& x_array, const py::object& h0_obj,
              const py::object& c0_obj, const py::object& lengths_obj) {
    if (x_array.ndim() != 3) {
      throw py::value_error("x: expected 3 dimensions (T, N, I), got " + shape_string(x_array));
    }
    T = x_array.shape(0);
    N = x_array.shape(1);
    const int64_t H = c.hidden_size, states = c.num_layers * c.directions();
    const bool lstm = c.cell == CellKind::Lstm;
    x = checked<S>(x_array, "x", {T, N, c.input_size});
    h0 = checked_optional<S>(h0_obj, "h0", {states, N, H});
    c0 = lstm ? checked_optional<S>(c0_obj, "c0", {states, N, H}) : nullptr;
    if (!lengths_obj.is_none()) {
      py::array l = py::cast<py::array>(lengths_obj);
      if (!l.dtype().is(py::dtype::of<int64_t>())) throw py::type_error("lengths: expected int64");
      lengths = checked<int64_t>(l, "lengths", {N});
    }
    if (T <= 0 || N <= 0) {
      throw py::value_error("x: expected T > 0 and N > 0, got " + shape_string(x_array));
    }
    y = empty<S>({T, N, c.directions() * H});
    h_n = empty<S>({states, N, H});
    if (lstm) {
      auto arr = empty<S>({states, N, H});
      c_n_data = arr.mutable_data();
      c_n = arr;
    }
  }
};

template <typename S>
py::tuple forward_impl(const ModelConfig& c, const std::vector<py::array>& weight_arrays,
                       const py::array& x, const py::object& h0, const py::object& c0,
                       const py::object& lengths, bool training, const py::object& dropout_masks) {
  const auto weights = checked_weights<S>(c, weight_arrays);
  ForwardCall<S> call(c, x, h0, c0, lengths);
  const S* masks = checked_optional<S>(
      dropout_masks, "dropout_masks", {c.num_layers - 1, call.T, call.N, c.directions() * c.hidden_size});
  std::shared_ptr<rnncore::TrainingCache<S>> cache;
  if (training) cache = std::make_shared<rnncore::TrainingCache<S>>();
  S* y_data = call.y.mutable_data();
  S* h_n_data = call.h_n.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::sequence_forward<S>(c, weights, call.T, call.N, call.x, call.h0, call.c0,
                                 call.lengths, y_data, h_n_data, call.c_n_data, cache.get(), masks);
  }
  py::object cache_obj = cache ? py::cast(cache) : py::none();
  return py::make_tuple(call.y, call.h_n, call.c_n, cache_obj);
}

// ------------------------------------------------------------------ prepared weights
template <typename S>
using Prepared = rnncore::PreparedWeights<S>;

template <typename S>
py::object prepare_impl(const ModelConfig& c, const std::vector<py::array>& weight_arrays) {
  const auto weights = checked_weights<S>(c, weight_arrays);
  std::shared_ptr<Prepared<S>> prepared;
  {
    py::gil_scoped_release release;
    prepared = std::make_shared<Prepared<S>>(c, weights);
  }
  return py::cast(prepared);
}

template <typename S>
py::tuple forward_prepared_impl(const Prepared<S>& prepared, const py::array& x,
                                const py::object& h0, const py::object& c0,
                                const py::object& lengths) {
  ForwardCall<S> call(prepared.config(), x, h0, c0, lengths);
  S* y_data = call.y.mutable_data();
  S* h_n_data = call.h_n.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::sequence_forward<S>(prepared, call.T, call.N, call.x, call.h0, call.c0, call.lengths,
                                 y_data, h_n_data, call.c_n_data);
  }
  return py::make_tuple(call.y, call.h_n, call.c_n);
}

template <typename S>
void bind_prepared(py::module_& m, const char* name) {
  py::class_<Prepared<S>, std::shared_ptr<Prepared<S>>>(
      m, name, "A model's weights packed once for inference (opaque; see rnncore/sequence.h).")
      .def_property_readonly("nbytes", &Prepared<S>::nbytes);
}

// The configuration is the cache's own: backward runs the model the forward call ran.
template <typename S>
py::tuple backward_impl(const rnncore::TrainingCache<S>& cache,
                        const std::vector<py::array>& weight_arrays, const py::object& grad_y,
                        const py::object& grad_h_n, const py::object& grad_c_n,
                        bool need_grad_input, const py::object& need_weight_grads) {
  const ModelConfig& c = cache.config();
  const auto weights = checked_weights<S>(c, weight_arrays);
  // Per weight array, whether its gradient is wanted (None: all); an unwanted one is None.
  std::vector<bool> wanted(weight_arrays.size(), true);
  if (!need_weight_grads.is_none()) {
    const auto flags = py::cast<std::vector<bool>>(need_weight_grads);
    if (flags.size() != weight_arrays.size()) {
      throw py::value_error("need_weight_grads: expected " + std::to_string(weight_arrays.size()) +
                            " flags, one per weight array, got " + std::to_string(flags.size()));
    }
    wanted = flags;
  }
  const int64_t T = cache.steps(), N = cache.batch(), H = c.hidden_size;
  const int64_t states = c.num_layers * c.directions(), gh = c.gates() * H;
  const bool lstm = c.cell == CellKind::Lstm;
  const S* gy = checked_optional<S>(grad_y, "grad_y", {T, N, c.directions() * H});
  const S* ghn = checked_optional<S>(grad_h_n, "grad_h_n", {states, N, H});
  const S* gcn = lstm ? checked_optional<S>(grad_c_n, "grad_c_n", {states, N, H}) : nullptr;

  // Not wanted: None, and the first layer's input-gradient product is skipped.
  py::object grad_x = py::none();
  S* grad_x_data = nullptr;
  if (need_grad_input) {
    auto arr = empty<S>({T, N, c.input_size});
    grad_x_data = arr.mutable_data();
    grad_x = arr;
  }
  auto grad_h0 = empty<S>({states, N, H});
  py::object grad_c0 = py::none();
  S* grad_c0_data = nullptr;
  if (lstm) {
    auto arr = empty<S>({states, N, H});
    grad_c0_data = arr.mutable_data();
    grad_c0 = arr;
  }
  py::list grad_weights;
  std::vector<rnncore::DirectionGrads<S>> grads(static_cast<std::size_t>(states));
  const int64_t per = c.bias ? 4 : 2;
  const auto gradient = [&](int64_t index, std::vector<int64_t> shape) -> S* {
    if (!wanted[static_cast<std::size_t>(index)]) {
      grad_weights.append(py::none());
      return nullptr;
    }
    auto arr = empty<S>(shape);
    grad_weights.append(arr);
    return arr.mutable_data();
  };
  for (int64_t slot = 0; slot < states; ++slot) {
    grads[slot].w_ih = gradient(slot * per, {gh, c.layer_input_size(slot / c.directions())});
    grads[slot].w_hh = gradient(slot * per + 1, {gh, H});
    if (c.bias) {
      grads[slot].b_ih = gradient(slot * per + 2, {gh});
      grads[slot].b_hh = gradient(slot * per + 3, {gh});
    }
  }
  S* grad_h0_data = grad_h0.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::sequence_backward<S>(c, weights, cache, gy, ghn, gcn, grad_x_data, grad_h0_data,
                                  grad_c0_data, grads);
  }
  return py::make_tuple(grad_x, grad_h0, grad_c0, grad_weights);
}

template <typename S>
void bind_cache(py::module_& m, const char* name) {
  py::class_<rnncore::TrainingCache<S>, std::shared_ptr<rnncore::TrainingCache<S>>>(
      m, name, "What backpropagation through time needs from one forward call (opaque).")
      .def_property_readonly("nbytes", &rnncore::TrainingCache<S>::nbytes)
      .def_property_readonly("config", &rnncore::TrainingCache<S>::config)
      .def_property_readonly("steps", &rnncore::TrainingCache<S>::steps)
      .def_property_readonly("batch", &rnncore::TrainingCache<S>::batch);
}

// ------------------------------------------------------------------ streaming
// The per-call path is kept short: rnncore.streaming has already converted the frame to a
// C-contiguous array of the stream's dtype in the common case, so this checks and runs. Below
// kStreamGilWork multiply-adds a step is shorter than releasing and retaking the GIL.
constexpr double kStreamGilWork = 2.0e5;

template <typename S>
struct StreamBinding {
  using Stream = rnncore::Stream<S>;

  static double work(const Stream& s) {
    const ModelConfig& c = s.config();
    return static_cast<double>(s.batch_size()) * c.num_layers * c.gates() * c.hidden_size *
           static_cast<double>(c.input_size + c.hidden_size);
  }

  // The array behind `obj` after checking dtype, C order and shape: batch_shape (leading dims
  // with the batch) or, when the batch is 1, the same without the batch axis.
  static py::array checked_frames(const py::handle& obj, const char* name,
                                  const std::vector<int64_t>& batched, bool writeable,
                                  bool need_contiguous = true) {
    if (!py::array_t<S>::check_(obj)) {
      if (!py::array::check_(obj)) {
        throw py::type_error(std::string(name) + ": expected a numpy array, got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
      }
      throw py::type_error(std::string(name) + ": expected dtype " +
                           std::string(py::str(py::dtype::of<S>())) + ", got " +
                           std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype())));
    }
    auto a = py::reinterpret_borrow<py::array>(obj);
    const py::ssize_t nd = a.ndim();
    const auto want = static_cast<py::ssize_t>(batched.size());
    bool ok = false;
    if (nd == want) {
      ok = true;
      for (py::ssize_t i = 0; i < nd; ++i) ok = ok && a.shape(i) == batched[static_cast<std::size_t>(i)];
    } else if (nd == want - 1 && batched[static_cast<std::size_t>(want - 2)] == 1) {
      // The unbatched form: the batch axis (second to last) left out.
      ok = true;
      for (py::ssize_t i = 0, j = 0; i < want; ++i) {
        if (i == want - 2) continue;
        ok = ok && a.shape(j++) == batched[static_cast<std::size_t>(i)];
      }
    }
    if (!ok) {
      std::vector<int64_t> unbatched = batched;
      unbatched.erase(unbatched.end() - 2);
      const bool single = batched[batched.size() - 2] == 1;
      throw py::value_error(std::string(name) + ": expected shape " + shape_string(batched) +
                            (single ? " or " + shape_string(unbatched) : std::string()) + ", got " +
                            shape_string(a));
    }
    if (need_contiguous && !(a.flags() & py::array::c_style)) {
      throw py::value_error(std::string(name) + ": expected a C-contiguous array");
    }
    if (writeable && !a.writeable()) throw py::value_error(std::string(name) + ": the array is read-only");
    return a;
  }

  // out: None (a new array shaped like x but with H last) or an array to write into.
  static py::array output_for(const Stream& s, const py::array& x, const py::handle& out,
                              std::vector<int64_t> batched) {
    if (out.is_none()) {
      std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
      shape.back() = static_cast<py::ssize_t>(s.output_size());
      return py::array_t<S>(shape);
    }
    batched.back() = s.output_size();
    return checked_frames(out, "out", batched, true);
  }

  // A frame that is not C-contiguous (a strided view) is copied once; `out` must be contiguous.
  static py::array contiguous(const py::handle& obj) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (a.flags() & py::array::c_style) return a;
    return py::array_t<S, py::array::c_style>::ensure(obj);
  }

  static py::object step(Stream& s, const py::handle& x_in, const py::handle& out_obj) {
    checked_frames(x_in, "x_t", {s.batch_size(), s.input_size()}, false, false);
    const py::array x = contiguous(x_in);
    py::array out = output_for(s, x, out_obj, {s.batch_size(), s.input_size()});
    const S* x_data = static_cast<const S*>(x.data());
    S* y_data = static_cast<S*>(out.mutable_data());
    if (work(s) >= kStreamGilWork) {
      py::gil_scoped_release release;
      s.step(x_data, y_data);
    } else {
      s.step(x_data, y_data);
    }
    return std::move(out);
  }

  // Stream.step(x_t, out=None) itself: a raw CPython function (METH_FASTCALL | METH_KEYWORDS)
  // bound to a capsule that holds the stream, which rnncore.streaming makes the Stream's `step`
  // attribute, so that a step from Python runs no Python frame, no pybind11 dispatch, no argument
  // conversion and no allocation (pybind11's call path cost ~0.3-0.5 us, a Python method around
  // this function another 60-100 ns: more than a small layer's step). It runs the C++ step on
  // frames that need nothing done to them: x and out NumPy arrays of the stream's dtype, native
  // byte order, aligned and C-contiguous, out writeable, each of shape (N, I) / (N, H) or, for
  // N = 1, (I,) / (H,). Every other call (out missing or None, a list, another dtype, a wrong
  // shape, a wrong keyword) goes to `fallback` with its arguments as they came: rnncore.streaming's
  // general step, which converts, allocates or raises the errors that name what was wrong.
  // Without a fallback (tests, benchmarks) such calls return None instead.
  struct FastTarget {
    Stream* stream;
    PyObject* owner;     // the pybind11 Stream object, kept alive while the function lives
    PyObject* fallback;  // nullptr, or a callable taking (x_t, out=None)
    double work;
  };

  static bool is_frame(PyObject* obj, int64_t rows, int64_t cols, bool writeable) noexcept {
    const auto& api = py::detail::npy_api::get();
    if (!api.PyArray_Check_(obj)) return false;
    const auto* a = py::detail::array_proxy(obj);
    const auto* d = py::detail::array_descriptor_proxy(a->descr);
    if (d->type_num != py::detail::npy_format_descriptor<S>::value || d->byteorder == '>') return false;
    int wanted = api.NPY_ARRAY_C_CONTIGUOUS_ | api.NPY_ARRAY_ALIGNED_;
    if (writeable) wanted |= api.NPY_ARRAY_WRITEABLE_;
    if ((a->flags & wanted) != wanted) return false;
    if (a->nd == 2) return a->dimensions[0] == rows && a->dimensions[1] == cols;
    return a->nd == 1 && rows == 1 && a->dimensions[0] == cols;
  }

  // x_t and out from a vectorcall's arguments (positional, or by keyword "x_t" / "out"); false
  // for any other shape of call.
  static bool frame_arguments(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames,
                              PyObject*& x, PyObject*& out) noexcept {
    x = nargs >= 1 ? args[0] : nullptr;
    out = nargs >= 2 ? args[1] : nullptr;
    if (nargs > 2) return false;
    const Py_ssize_t keywords = kwnames == nullptr ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < keywords; ++k) {
      PyObject* name = PyTuple_GET_ITEM(kwnames, k);
      if (out == nullptr && PyUnicode_CompareWithASCIIString(name, "out") == 0) {
        out = args[nargs + k];
      } else if (x == nullptr && PyUnicode_CompareWithASCIIString(name, "x_t") == 0) {
        x = args[nargs + k];
      } else {
        return false;
      }
    }
    return x != nullptr;
  }

  static PyObject* fast_step(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                             PyObject* kwnames) noexcept {
    const auto* target = static_cast<const FastTarget*>(PyCapsule_GetPointer(self, nullptr));
    if (target == nullptr) return nullptr;
    Stream& s = *target->stream;
    PyObject* x = nullptr;
    PyObject* out = nullptr;
    const bool arguments = frame_arguments(args, nargs, kwnames, x, out);
    if (!arguments || out == nullptr || !is_frame(x, s.batch_size(), s.input_size(), false) ||
        !is_frame(out, s.batch_size(), s.output_size(), true)) {
      if (target->fallback != nullptr) {
        return PyObject_Vectorcall(target->fallback, args, static_cast<size_t>(nargs), kwnames);
      }
      if (!arguments) {
        PyErr_SetString(PyExc_TypeError, "step: expected (x_t, out=None)");
        return nullptr;
      }
      Py_RETURN_NONE;
    }
    const S* x_data = reinterpret_cast<const S*>(py::detail::array_proxy(x)->data);
    S* y_data = reinterpret_cast<S*>(py::detail::array_proxy(out)->data);
    try {
      if (target->work >= kStreamGilWork) {
        PyThreadState* state = PyEval_SaveThread();
        try {
          s.step(x_data, y_data);
        } catch (...) {
          PyEval_RestoreThread(state);
          throw;
        }
        PyEval_RestoreThread(state);
      } else {
        s.step(x_data, y_data);
      }
    } catch (const std::exception& e) {  // StreamInUseError: what pybind11 raises for it
      PyErr_SetString(PyExc_RuntimeError, e.what());
      return nullptr;
    }
    Py_INCREF(out);
    return out;
  }

  static py::object fast_step_function(const py::object& self, const py::object& fallback) {
    static PyMethodDef def = {
        "step", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&fast_step)),
        METH_FASTCALL | METH_KEYWORDS,
        "step($self, x_t, out=None)\n--\n\n"
        "One frame: x_t (batch_size, input_size), or (input_size,) when batch_size is 1. Returns\n"
        "the top layer's new h, (batch_size, hidden_size) or (hidden_size,). With `out` (a\n"
        "C-contiguous array of that shape and the model's dtype) the result is written there and\n"
        "`out` is returned: no allocation at all when x_t is already a C-contiguous array of the\n"
        "model's dtype."};
    PyObject* callable = fallback.is_none() ? nullptr : fallback.ptr();
    auto* target = new FastTarget{&self.cast<Stream&>(), self.ptr(), callable, work(self.cast<const Stream&>())};
    Py_INCREF(target->owner);
    Py_XINCREF(target->fallback);
    PyObject* capsule = PyCapsule_New(target, nullptr, [](PyObject* c) {
      auto* t = static_cast<FastTarget*>(PyCapsule_GetPointer(c, nullptr));
      Py_DECREF(t->owner);
      Py_XDECREF(t->fallback);
      delete t;
    });
    if (capsule == nullptr) {
      Py_DECREF(target->owner);
      Py_XDECREF(target->fallback);
      delete target;
      throw py::error_already_set();
    }
    PyObject* function = PyCFunction_New(&def, capsule);
    Py_DECREF(capsule);  // the function holds it
    if (function == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(function);
  }

  // The C++ side of bench/python_step.py: `count` steps straight from C++, timed here. With
  // touch_bytes > 0, one byte of every 64 of a buffer that size is written between steps (the
  // memory traffic a caller does between frames, e.g. the Python interpreter's) and each step is
  // timed on its own, the touching left out.
  static double time_steps(Stream& s, const py::handle& x, const py::handle& out, int64_t count,
                           int64_t touch_bytes) {
    if (!is_frame(x.ptr(), s.batch_size(), s.input_size(), false) ||
        !is_frame(out.ptr(), s.batch_size(), s.output_size(), true)) {
      throw py::value_error("time_steps: x_t and out must be frames fast_step takes");
    }
    if (touch_bytes < 0 || touch_bytes > (int64_t(1) << 30)) {
      throw py::value_error("time_steps: touch_bytes must be in 0..2**30, got " +
                            std::to_string(touch_bytes));
    }
    const S* x_data = reinterpret_cast<const S*>(py::detail::array_proxy(x.ptr())->data);
    S* y_data = reinterpret_cast<S*>(py::detail::array_proxy(out.ptr())->data);
    using Clock = std::chrono::steady_clock;
    if (touch_bytes == 0) {
      const auto start = Clock::now();
      for (int64_t i = 0; i < count; ++i) s.step(x_data, y_data);
      return std::chrono::duration<double>(Clock::now() - start).count();
    }
    std::vector<unsigned char> other(static_cast<std::size_t>(touch_bytes), 0);
    volatile unsigned char* lines = other.data();
    Clock::duration stepping{0};
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t b = 0; b < touch_bytes; b += 64) lines[b] = static_cast<unsigned char>(lines[b] + 1);
      const auto start = Clock::now();
      s.step(x_data, y_data);
      stepping += Clock::now() - start;
    }
    return std::chrono::duration<double>(stepping).count();
  }

  static py::object step_many(Stream& s, const py::handle& x_obj, const py::handle& out_obj) {
    if (!py::array::check_(x_obj) || py::reinterpret_borrow<py::array>(x_obj).ndim() < 2) {
      throw py::value_error("chunk: expected an array (T, N, I) or, for one stream, (T, I)");
    }
    const int64_t T = py::reinterpret_borrow<py::array>(x_obj).shape(0);
    checked_frames(x_obj, "chunk", {T, s.batch_size(), s.input_size()}, false, false);
    const py::array x = contiguous(x_obj);
    py::array out = output_for(s, x, out_obj, {T, s.batch_size(), s.input_size()});
    // In place (out is chunk, I == H) works frame by frame; any other overlap would overwrite
    // frames before they are read.
    const char* xb = static_cast<const char*>(x.data());
    const char* ob = static_cast<const char*>(out.data());
    const bool overlap = xb < ob + out.nbytes() && ob < xb + x.nbytes();
    if (overlap && !(xb == ob && x.nbytes() == out.nbytes())) {
      throw py::value_error("out: shares memory with chunk (only exactly in place, with I == H, is allowed)");
    }
    const S* x_data = static_cast<const S*>(x.data());
    S* y_data = static_cast<S*>(out.mutable_data());
    {
      py::gil_scoped_release release;
      s.step_many(T, x_data, y_data);
    }
    return std::move(out);
  }

  static py::tuple get_state(const Stream& s) {
    const std::vector<int64_t> shape{s.config().num_layers, s.batch_size(), s.output_size()};
    auto h = empty<S>(shape);
    py::object c = py::none();
    S* c_data = nullptr;
    if (s.has_cell_state()) {
      auto arr = empty<S>(shape);
      c_data = arr.mutable_data();
      c = arr;
    }
    s.get_state(h.mutable_data(), c_data);
    return py::make_tuple(h, c);
  }

  static void set_state(Stream& s, const py::array& h, const py::object& c) {
    const std::vector<int64_t> shape{s.config().num_layers, s.batch_size(), s.output_size()};
    const S* h_data = checked<S>(h, "h", shape);
    const S* c_data = s.has_cell_state() ? checked_optional<S>(c, "c", shape) : nullptr;
    s.set_state(h_data, c_data);
  }

  // All rows in one call, so that no other thread's call lands between two of them.
  static void reset_rows(Stream& s, const std::vector<int64_t>& rows) {
    for (int64_t r : rows) {
      if (r < 0 || r >= s.batch_size()) {
        throw py::value_error("rows: expected row indices in 0.." + std::to_string(s.batch_size() - 1) +
                              ", got " + std::to_string(r));
      }
    }
    s.reset_rows(rows.data(), static_cast<int64_t>(rows.size()));
  }

  static void bind(py::module_& m, const char* name) {
    py::class_<Stream>(m, name, "A packed, stateful streaming model (private: use Model.stream()).")
        .def(py::init([](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                         bool bias, const std::vector<py::array>& weight_arrays, int64_t batch,
                         int threads) {
               const ModelConfig c = make_config(cell, input_size, hidden_size, num_layers, false, bias);
               if (batch < 1) throw py::value_error("batch_size: expected >= 1, got " + std::to_string(batch));
               if (threads < 1) throw py::value_error("threads: expected >= 1, got " + std::to_string(threads));
               return std::make_unique<Stream>(c, checked_weights<S>(c, weight_arrays), batch, threads);
             }),
             py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
             py::arg("bias"), py::arg("weights"), py::arg("batch_size"), py::arg("threads") = 1)
        .def_static(
            "bytes_needed",
            [](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
               int64_t batch) {
              const ModelConfig c = make_config(cell, input_size, hidden_size, num_layers, false, true);
              return Stream::bytes_needed(c, batch);
            },
            py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
            py::arg("batch_size"),
            "Bytes a stream of this shape allocates (ValueError where that overflows 64 bits).")
        .def("step", &step, py::arg("x_t"), py::arg("out").none(true) = py::none())
        .def("fast_step", &fast_step_function, py::arg("fallback") = py::none())
        .def("time_steps", &time_steps, py::arg("x_t"), py::arg("out"), py::arg("count"),
             py::arg("touch_bytes") = 0)
        .def("step_many", &step_many, py::arg("chunk"), py::arg("out").none(true) = py::none())
        .def("get_state", &get_state)
        .def("set_state", &set_state, py::arg("h"), py::arg("c").none(true) = py::none())
        .def("reset", &Stream::reset)
        .def("reset_rows", &reset_rows, py::arg("rows"))
        .def_property_readonly("batch_size", &Stream::batch_size)
        .def_property_readonly("threads", &Stream::threads);
  }
};

// ------------------------------------------------------------------ model files
// rnncore.io reads and writes model files through these: rnncore/io.h is the one implementation.
template <typename S>
py::dict parameter_arrays(const rnncore::Model<S>& model) {
  py::dict params;
  for (std::size_t i = 0; i < model.specs().size(); ++i) {
    auto a = empty<S>(model.specs()[i].shape);
    std::copy(model.parameter(i).begin(), model.parameter(i).end(), a.mutable_data());
    params[py::str(model.specs()[i].name)] = a;
  }
  return params;
}

template <typename S>
py::tuple read_model_file_impl(const rnncore::Model<S>& model) {
  const ModelConfig& c = model.config();
  py::dict config;
  config["cell"] = rnncore::cell_name(c.cell);
  config["input_size"] = c.input_size;
  config["hidden_size"] = c.hidden_size;
  config["num_layers"] = c.num_layers;
  config["bias"] = c.bias;
  config["bidirectional"] = c.bidirectional;
  return py::make_tuple(config, parameter_arrays(model));
}

template <typename S>
py::tuple parse_model_impl(const unsigned char* data, std::size_t size, const std::string& source,
                           const char* dtype, bool batch_first) {
  std::unique_ptr<rnncore::Model<S>> model;
  {
    py::gil_scoped_release release;
    model = std::make_unique<rnncore::Model<S>>(rnncore::load_model_from_memory<S>(data, size, source));
  }
  return py::make_tuple(model->config(), dtype, batch_first, parameter_arrays(*model));
}

// A file's bytes (read by rnncore.io, which raises the OSErrors) parsed by the C++ reader:
// (ModelConfig, "float32" | "float64" as stored, batch_first, {name: array}).
py::tuple parse_model(const py::bytes& bytes, const std::string& source) {
  const std::string_view view(bytes);
  const auto* data = reinterpret_cast<const unsigned char*>(view.data());
  // The header alone first, for the stored dtype; the full read below parses it again and
  // raises every error the file has (a mixed or foreign dtype included).
  const rnncore::SafetensorsHeader header = rnncore::parse_safetensors(data, view.size(), source);
  bool f64 = false;
  for (const auto& entry : header.tensors) f64 = f64 || entry.second.dtype == "F64";
  const auto flag = header.metadata.find("batch_first");
  const bool batch_first = flag != header.metadata.end() && flag->second == "true";
  if (f64) return parse_model_impl<double>(data, view.size(), source, "float64", batch_first);
  return parse_model_impl<float>(data, view.size(), source, "float32", batch_first);
}

template <typename S>
py::bytes serialize_model_impl(const ModelConfig& c, const std::vector<py::array>& weight_arrays,
                               bool batch_first) {
  const rnncore::Model<S> model(c, checked_weights<S>(c, weight_arrays));
  const std::vector<unsigned char> bytes = rnncore::serialize_model(model, batch_first);
  return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// ------------------------------------------------------------------ the model's configuration
// Built once per model (rnncore.layers) and passed to every call; validate() is the one check of
// the sizes. Immutable, so that a cache or prepared handle made with it can trust it.
void bind_model_config(py::module_& m) {
  py::class_<ModelConfig>(m, "ModelConfig",
                          "A model's hyper-parameters (rnncore/sequence.h), checked when made.")
      .def(py::init(&named_config),
           py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers") = 1,
           py::arg("bidirectional") = false, py::arg("bias") = true)
      .def_property_readonly("cell", [](const ModelConfig& c) { return std::string(rnncore::cell_name(c.cell)); })
      .def_property_readonly("cell_code", [](const ModelConfig& c) { return static_cast<int>(c.cell); })
      .def_readonly("input_size", &ModelConfig::input_size)
      .def_readonly("hidden_size", &ModelConfig::hidden_size)
      .def_readonly("num_layers", &ModelConfig::num_layers)
      .def_readonly("bidirectional", &ModelConfig::bidirectional)
      .def_readonly("bias", &ModelConfig::bias)
      .def_property_readonly("gates", &ModelConfig::gates)
      .def_property_readonly("directions", &ModelConfig::directions)
      .def("__eq__", [](const ModelConfig& a, const py::object& b) {
        return py::isinstance<ModelConfig>(b) && a == b.cast<const ModelConfig&>();
      })
      .def("__hash__", [](const ModelConfig& c) {
        return py::hash(py::make_tuple(static_cast<int>(c.cell), c.input_size, c.hidden_size,
                                       c.num_layers, c.bidirectional, c.bias));
      })
      .def("__repr__", [](const ModelConfig& c) {
        return "ModelConfig(cell='" + std::string(rnncore::cell_name(c.cell)) +
               "', input_size=" + std::to_string(c.input_size) +
               ", hidden_size=" + std::to_string(c.hidden_size) +
               ", num_layers=" + std::to_string(c.num_layers) +
               ", bidirectional=" + (c.bidirectional ? "True" : "False") +
               ", bias=" + (c.bias ? "True" : "False") + ")";
      })
      .def(py::pickle(
          [](const ModelConfig& c) {
            return py::make_tuple(std::string(rnncore::cell_name(c.cell)), c.input_size,
                                  c.hidden_size, c.num_layers, c.bidirectional, c.bias);
          },
          [](const py::tuple& t) {
            if (t.size() != 6) throw py::value_error("ModelConfig: expected a state of 6 values");
            return named_config(t[0].cast<std::string>(), t[1].cast<int64_t>(), t[2].cast<int64_t>(),
                                t[3].cast<int64_t>(), t[4].cast<bool>(), t[5].cast<bool>());
          }));
}

py::dict build_info() {
  py::dict d;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  const rnncore::KernelIsa isa = rnncore::kernel_isa();  // the kernels' library, not this file
  d["arch"] = isa.arch;
  d["isa_features"] = isa.features;
  d["vector_bytes"] = isa.vector_bytes;
  d["panel_floats"] = isa.panel_floats;
  d["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
               "." + std::to_string(EIGEN_MINOR_VERSION);
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["max_threads"] = rnncore::max_threads();
  // CUDA (rnncore/cuda.h): whether it was built, the toolkit it was built with, the device found.
  d["cuda"] = rnncore::cuda::built();
  d["cuda_version"] = rnncore::cuda::compiled_version();
  std::string no_device;
  const auto device = rnncore::cuda::device(&no_device);
  d["cuda_device"] = device ? device->name + " (compute capability " + std::to_string(device->major) +
                                  "." + std::to_string(device->minor) + ")"
                            : "none (" + no_device + ")";
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnncore's compiled kernels (private: use the rnncore package).";
  // rnncore/checked.h: sizes beyond these raise ValueError (std::length_error).
  m.attr("MAX_SIZE") = rnncore::kMaxSize;
  m.attr("MAX_ARRAY_BYTES") = rnncore::kMaxArrayBytes;
  bind_model_config(m);
  bind_cache<float>(m, "TrainingCacheF32");
  bind_cache<double>(m, "TrainingCacheF64");
  bind_prepared<float>(m, "PreparedF32");
  bind_prepared<double>(m, "PreparedF64");

  m.def(
      "forward",
      [](const ModelConfig& c, const std::vector<py::array>& weights, const py::array& x,
         const py::object& h0, const py::object& c0, const py::object& lengths, bool training,
         const py::object& dropout_masks) {
        if (x.dtype().is(py::dtype::of<float>())) {
          return forward_impl<float>(c, weights, x, h0, c0, lengths, training, dropout_masks);
        }
        if (x.dtype().is(py::dtype::of<double>())) {
          return forward_impl<double>(c, weights, x, h0, c0, lengths, training, dropout_masks);
        }
        throw py::type_error("x: expected float32 or float64, got " + std::string(py::str(x.dtype())));
      },
      py::arg("config"), py::arg("weights"), py::arg("x"), py::arg("h0").none(true),
      py::arg("c0").none(true), py::arg("lengths").none(true), py::arg("training"),
      py::arg("dropout_masks") = py::none(),
      "Whole-sequence forward. Returns (y, h_n, c_n or None, cache or None). dropout_masks: "
      "None or [L-1, T, N, D*H], multiplied into each lower layer's output (sequence.h).");

  m.def(
      "backward",
      [](const py::object& cache, const std::vector<py::array>& weights, const py::object& grad_y,
         const py::object& grad_h_n, const py::object& grad_c_n, bool need_grad_input,
         const py::object& need_weight_grads) {
        if (py::isinstance<rnncore::TrainingCache<float>>(cache)) {
          return backward_impl<float>(cache.cast<const rnncore::TrainingCache<float>&>(), weights,
                                      grad_y, grad_h_n, grad_c_n, need_grad_input, need_weight_grads);
        }
        if (py::isinstance<rnncore::TrainingCache<double>>(cache)) {
          return backward_impl<double>(cache.cast<const rnncore::TrainingCache<double>&>(), weights,
                                       grad_y, grad_h_n, grad_c_n, need_grad_input, need_weight_grads);
        }
        throw py::type_error("cache: expected a training cache from rnncore._core.forward");
      },
      py::arg("cache"), py::arg("weights"), py::arg("grad_y").none(true),
      py::arg("grad_h_n").none(true), py::arg("grad_c_n").none(true),
      py::arg("need_grad_input") = true, py::arg("need_weight_grads") = py::none(),
      "BPTT over the cache's configuration. Returns (grad_x or None (need_grad_input=False), "
      "grad_h0, grad_c0 or None, [weight grads in the order of weights; None where "
      "need_weight_grads says False]).");

  m.def(
      "prepare",
      [](const ModelConfig& c, const std::vector<py::array>& weights) {
        if (weights.empty()) throw py::value_error("weights: expected arrays, got none");
        if (weights[0].dtype().is(py::dtype::of<float>())) return prepare_impl<float>(c, weights);
        if (weights[0].dtype().is(py::dtype::of<double>())) return prepare_impl<double>(c, weights);
        throw py::type_error("weights: expected float32 or float64, got " +
                             std::string(py::str(weights[0].dtype())));
      },
      py::arg("config"), py::arg("weights"),
      "Packs the weights once for forward_prepared (a copy: later changes do not reach it).");
  m.def(
      "forward_prepared",
      [](const py::object& prepared, const py::array& x, const py::object& h0, const py::object& c0,
         const py::object& lengths) {
        if (py::isinstance<Prepared<float>>(prepared)) {
          return forward_prepared_impl<float>(prepared.cast<const Prepared<float>&>(), x, h0, c0,
                                              lengths);
        }
        if (py::isinstance<Prepared<double>>(prepared)) {
          return forward_prepared_impl<double>(prepared.cast<const Prepared<double>&>(), x, h0, c0,
                                               lengths);
        }
        throw py::type_error("prepared: expected the result of rnncore._core.prepare");
      },
      py::arg("prepared"), py::arg("x"), py::arg("h0").none(true), py::arg("c0").none(true),
      py::arg("lengths").none(true),
      "Inference over prepared weights. Returns (y, h_n, c_n or None).");

  // Concurrent calls on one Stream raise RuntimeError (a std::logic_error; see rnncore/stream.h).
  StreamBinding<float>::bind(m, "StreamF32");
  StreamBinding<double>::bind(m, "StreamF64");

  py::register_exception<rnncore::ModelFileError>(m, "ModelFileError", PyExc_ValueError);
  m.def(
      "read_model_file",
      [](const std::string& path, const std::string& dtype, uint64_t max_bytes) -> py::tuple {
        if (dtype == "float32") return read_model_file_impl(rnncore::load_model<float>(path, max_bytes));
        if (dtype == "float64") return read_model_file_impl(rnncore::load_model<double>(path, max_bytes));
        throw py::value_error("dtype: expected float32 or float64, got " + dtype);
      },
      py::arg("path"), py::arg("dtype") = "float32",
      py::arg("max_bytes") = rnncore::kDefaultMaxModelFileBytes,
      "The C++ reader (rnncore/io.h): (config dict, {name: array}); raises ModelFileError.");
  m.def("parse_model", &parse_model, py::arg("data"), py::arg("source"),
        "The C++ reader over a file's bytes: (ModelConfig, stored dtype, batch_first, {name: "
        "array}); raises ModelFileError naming `source`.");
  m.def(
      "serialize_model",
      [](const ModelConfig& c, const std::vector<py::array>& weights, bool batch_first) -> py::bytes {
        if (weights.empty()) throw py::value_error("weights: expected arrays");
        if (weights[0].dtype().is(py::dtype::of<float>())) return serialize_model_impl<float>(c, weights, batch_first);
        if (weights[0].dtype().is(py::dtype::of<double>())) return serialize_model_impl<double>(c, weights, batch_first);
        throw py::type_error("weights: expected float32 or float64, got " +
                             std::string(py::str(weights[0].dtype())));
      },
      py::arg("config"), py::arg("weights"), py::arg("batch_first") = false,
      "The bytes of the model file (rnncore::serialize_model) for these weights.");

  m.def("forward_flops", [](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                            bool bidirectional, int64_t steps, int64_t batch) {
    return rnncore::forward_flops(make_config(cell, input_size, hidden_size, num_layers, bidirectional, true),
                                  steps, batch);
  });
  m.def(
      "wavefront_threads",
      [](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers, bool bidirectional,
         int64_t steps, int64_t batch, const std::string& dtype) {
        const ModelConfig c =
            make_config(cell, input_size, hidden_size, num_layers, bidirectional, true);
        if (steps <= 0 || batch <= 0) {
          throw py::value_error("steps and batch: expected positive integers, got steps=" +
                                std::to_string(steps) + ", batch=" + std::to_string(batch));
        }
        if (dtype == "float32") return rnncore::detail::wavefront_threads<float>(c, steps, batch);
        if (dtype == "float64") return rnncore::detail::wavefront_threads<double>(c, steps, batch);
        throw py::value_error("dtype: expected float32 or float64, got " + dtype);
      },
      py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("steps"), py::arg("batch"), py::arg("dtype") = "float32",
      "Threads a forward/backward call of this shape runs its layers on as a wavefront (1: layer "
      "after layer); see cpp/src/thread_policy.h.");
  m.def(
      "time_loop_split",
      [](int cell, int64_t hidden_size, int64_t steps, int64_t batch, const std::string& dtype) {
        const ModelConfig c = make_config(cell, hidden_size, hidden_size, 1, false, true);
        if (steps <= 0 || batch <= 0) {
          throw py::value_error("steps and batch: expected positive integers, got steps=" +
                                std::to_string(steps) + ", batch=" + std::to_string(batch));
        }
        rnncore::detail::TimeLoopSplit split;
        if (dtype == "float32") {
          split = rnncore::detail::time_loop_split<float>(c, steps, batch);
        } else if (dtype == "float64") {
          split = rnncore::detail::time_loop_split<double>(c, steps, batch);
        } else {
          throw py::value_error("dtype: expected float32 or float64, got " + dtype);
        }
        return py::make_tuple(split.threads,
                              split.threads == 1 ? "one" : split.by_rows ? "rows" : "units");
      },
      py::arg("cell"), py::arg("hidden_size"), py::arg("steps"), py::arg("batch"),
      py::arg("dtype") = "float32",
      "(threads, 'one' | 'units' | 'rows'): how one layer's time loop of this shape is split "
      "across threads; see rnncore/sequence.h.");
  m.def(
      "gemm_gflops",
      [](int64_t rows, int64_t cols, int64_t depth, int repeats) {
        // C[rows, cols] = A[rows, depth] * B[cols, depth]^T in float32 through Eigen, at the
        // current thread count: the yardstick ("GEMM peak") that rnncore.benchmark reports
        // kernel rates against. Returns the best rate over `repeats` timed products, in GFLOP/s.
        if (rows <= 0 || cols <= 0 || depth <= 0 || repeats <= 0) {
          throw py::value_error("gemm_gflops: sizes and repeats must be positive");
        }
        using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        py::gil_scoped_release release;
        const Mat a = Mat::Random(rows, depth), b = Mat::Random(cols, depth);
        Mat c(rows, cols);
        c.noalias() = a * b.transpose();  // warm-up
        double best = 1e300;
        for (int r = 0; r < repeats; ++r) {
          const auto start = std::chrono::steady_clock::now();
          c.noalias() = a * b.transpose();
          best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        return 2.0 * static_cast<double>(rows) * cols * depth / best * 1e-9;
      },
      py::arg("rows"), py::arg("cols"), py::arg("depth"), py::arg("repeats") = 5,
      "Float32 GEMM rate of Eigen at the current threads, GFLOP/s (the benchmark yardstick).");
  m.def("build_info", &build_info,
        "Compiler, the kernels' instruction set (arch, isa_features, vector_bytes, panel_floats), "
        "Eigen version, OpenMP and CUDA flags.");
  m.def("cpu_isa_features", &rnncore::cpu_isa_features,
        "The x86 extensions of build_info()['isa_features']'s vocabulary that the running CPU "
        "supports (cpuid), or None where that cannot be asked.");
  m.def("set_flush_denormals", &rnncore::set_flush_denormals, py::arg("flush"),
        "Whether the kernels flush subnormal floats to zero (default True; see rnncore/thread_plan.h).");
  m.def("get_flush_denormals", &rnncore::flush_denormals);
  m.def("l2_cache_bytes", &rnncore::detail::l2_cache_bytes,
        "One core's L2 cache in bytes, as the time-loop split weighs it (RNNCORE_L2_BYTES, else "
        "the system's, else 1 MiB).");
  m.def("get_num_threads", &rnncore::max_threads);
  m.def("_reload_thread_settings", &rnncore::detail::reload_thread_settings,
        "Tests only: re-read the RNNCORE_* thread settings (read once otherwise).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads: expected >= 1, got " + std::to_string(n));
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    Eigen::setNbThreads(n);
  });
  m.def("set_thread_plan", [](const std::string& plan) {
    if (plan == "measured") {
      rnncore::set_thread_plan(rnncore::ThreadPlan::Measured);
    } else if (plan == "fixed") {
      rnncore::set_thread_plan(rnncore::ThreadPlan::Fixed);
    } else {
      const std::string shown = plan.size() > 40 ? plan.substr(0, 40) + "..." : plan;
      throw py::value_error("plan: expected 'measured' or 'fixed', got '" + shown + "'");
    }
  }, py::arg("plan"),
        "'measured' (default): a call that may use several threads times itself against one "
        "thread and runs the faster; 'fixed': every call takes the threads its size gives it.");
  m.def("get_thread_plan", []() {
    return std::string(rnncore::thread_plan() == rnncore::ThreadPlan::Measured ? "measured" : "fixed");
  });
  m.def("thread_plan_report", []() {
    py::list out;
    for (const auto& e : rnncore::thread_plan_report()) {
      py::dict d;
      d["pass"] = e.pass;
      d["cell"] = rnncore::cell_name(e.cell);
      d["dtype"] = e.scalar_bytes == 8 ? "float64" : "float32";
      d["input_size"] = e.input_size;
      d["hidden_size"] = e.hidden_size;
      d["num_layers"] = e.num_layers;
      d["bidirectional"] = e.bidirectional;
      d["lengths"] = e.lengths;
      d["batch"] = e.batch;
      d["steps"] = py::make_tuple(e.steps_from, e.steps_to);
      d["threads"] = e.threads;
      d["calls"] = e.calls;
      d["alone_calls"] = e.alone_calls;
      d["decided"] = e.decided;
      d["choice"] = !e.decided ? "measuring" : (e.team ? "team" : "alone");
      d["team_us_per_step"] = e.team_seconds_per_step * 1e6;
      d["alone_us_per_step"] = e.alone_seconds_per_step * 1e6;
      out.append(d);
    }
    return out;
  }, "What the measured thread plan has timed: one dict per kind of call.");
  m.def("reset_thread_plan", &rnncore::reset_thread_plan,
        "Forget the measured thread plan's times (the next calls measure afresh).");
  m.def("empty_cache", &rnncore::memory::empty_cache,
        "Return the workspace pool's free blocks to the system; the number of bytes released.");
  m.def("cache_info", []() {
    py::dict info;
    info["cached_bytes"] = rnncore::memory::cached_bytes();
    info["limit_bytes"] = rnncore::memory::cache_limit();
    return info;
  }, "Bytes of free workspace blocks held for reuse, and the most that will be held.");
}

// rnncore._core: the thin pybind11 layer. The Python package validates arguments and builds
// friendly messages; this layer checks every shape, dtype and layout again (cheaply) so that no
// caller can make the kernels read or write out of bounds, then releases the GIL and runs them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <Eigen/Core>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "rnncore/parallel.h"
#include "rnncore/sequence.h"

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

ModelConfig make_config(int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                        bool bidirectional, bool bias) {
  if (cell < 0 || cell > 3) throw py::value_error("cell: expected 0..3, got " + std::to_string(cell));
  ModelConfig c;
  c.cell = static_cast<CellKind>(cell);
  c.input_size = input_size;
  c.hidden_size = hidden_size;
  c.num_layers = num_layers;
  c.bidirectional = bidirectional;
  c.bias = bias;
  c.validate();
  return c;
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

template <typename S>
py::array_t<S> empty(const std::vector<int64_t>& shape) {
  return py::array_t<S>(std::vector<py::ssize_t>(shape.begin(), shape.end()));
}

template <typename S>
py::tuple forward_impl(const ModelConfig& c, const std::vector<py::array>& weight_arrays,
                       const py::array& x, const py::object& h0, const py::object& c0,
                       const py::object& lengths, bool training) {
  const auto weights = checked_weights<S>(c, weight_arrays);
  if (x.ndim() != 3) throw py::value_error("x: expected 3 dimensions (T, N, I), got " + shape_string(x));
  const int64_t T = x.shape(0), N = x.shape(1), H = c.hidden_size;
  const int64_t states = c.num_layers * c.directions();
  const bool lstm = c.cell == CellKind::Lstm;
  const S* x_data = checked<S>(x, "x", {T, N, c.input_size});
  const S* h0_data = checked_optional<S>(h0, "h0", {states, N, H});
  const S* c0_data = lstm ? checked_optional<S>(c0, "c0", {states, N, H}) : nullptr;
  const int64_t* len_data = nullptr;
  if (!lengths.is_none()) {
    py::array l = py::cast<py::array>(lengths);
    if (!l.dtype().is(py::dtype::of<int64_t>())) throw py::type_error("lengths: expected int64");
    len_data = checked<int64_t>(l, "lengths", {N});
  }
  if (T <= 0 || N <= 0) throw py::value_error("x: expected T > 0 and N > 0, got " + shape_string(x));

  auto y = empty<S>({T, N, c.directions() * H});
  auto h_n = empty<S>({states, N, H});
  py::object c_n = py::none();
  S* c_n_data = nullptr;
  if (lstm) {
    auto arr = empty<S>({states, N, H});
    c_n_data = arr.mutable_data();
    c_n = arr;
  }
  std::shared_ptr<rnncore::TrainingCache<S>> cache;
  if (training) cache = std::make_shared<rnncore::TrainingCache<S>>();
  S* y_data = y.mutable_data();
  S* h_n_data = h_n.mutable_data();
  {
    py::gil_scoped_release release;
    rnncore::sequence_forward<S>(c, weights, T, N, x_data, h0_data, c0_data, len_data, y_data,
                                 h_n_data, c_n_data, cache.get());
  }
  py::object cache_obj = cache ? py::cast(cache) : py::none();
  return py::make_tuple(y, h_n, c_n, cache_obj);
}

template <typename S>
py::tuple backward_impl(const ModelConfig& c, const std::vector<py::array>& weight_arrays,
                        const rnncore::TrainingCache<S>& cache, const py::object& grad_y,
                        const py::object& grad_h_n, const py::object& grad_c_n) {
  const auto weights = checked_weights<S>(c, weight_arrays);
  if (!(cache.config() == c)) throw py::value_error("cache: it was made by a model of another configuration");
  const int64_t T = cache.steps(), N = cache.batch(), H = c.hidden_size;
  const int64_t states = c.num_layers * c.directions(), gh = c.gates() * H;
  const bool lstm = c.cell == CellKind::Lstm;
  const S* gy = checked_optional<S>(grad_y, "grad_y", {T, N, c.directions() * H});
  const S* ghn = checked_optional<S>(grad_h_n, "grad_h_n", {states, N, H});
  const S* gcn = lstm ? checked_optional<S>(grad_c_n, "grad_c_n", {states, N, H}) : nullptr;

  auto grad_x = empty<S>({T, N, c.input_size});
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
  for (int64_t slot = 0; slot < states; ++slot) {
    auto w_ih = empty<S>({gh, c.layer_input_size(slot / c.directions())});
    auto w_hh = empty<S>({gh, H});
    grads[slot].w_ih = w_ih.mutable_data();
    grads[slot].w_hh = w_hh.mutable_data();
    grad_weights.append(w_ih);
    grad_weights.append(w_hh);
    if (c.bias) {
      auto b_ih = empty<S>({gh});
      auto b_hh = empty<S>({gh});
      grads[slot].b_ih = b_ih.mutable_data();
      grads[slot].b_hh = b_hh.mutable_data();
      grad_weights.append(b_ih);
      grad_weights.append(b_hh);
    }
  }
  S* grad_x_data = grad_x.mutable_data();
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
      .def_property_readonly("steps", &rnncore::TrainingCache<S>::steps)
      .def_property_readonly("batch", &rnncore::TrainingCache<S>::batch);
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
  d["simd"] = std::string(Eigen::SimdInstructionSetsInUse());
  d["eigen"] = std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) +
               "." + std::to_string(EIGEN_MINOR_VERSION);
#ifdef _OPENMP
  d["openmp"] = true;
#else
  d["openmp"] = false;
#endif
  d["max_threads"] = rnncore::max_threads();
#ifdef RNNCORE_WITH_CUDA
  d["cuda"] = true;
#else
  d["cuda"] = false;
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnncore's compiled kernels (private: use the rnncore package).";
  bind_cache<float>(m, "TrainingCacheF32");
  bind_cache<double>(m, "TrainingCacheF64");

  m.def(
      "forward",
      [](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers, bool bidirectional,
         bool bias, const std::vector<py::array>& weights, const py::array& x, const py::object& h0,
         const py::object& c0, const py::object& lengths, bool training) {
        const ModelConfig c = make_config(cell, input_size, hidden_size, num_layers, bidirectional, bias);
        if (x.dtype().is(py::dtype::of<float>())) {
          return forward_impl<float>(c, weights, x, h0, c0, lengths, training);
        }
        if (x.dtype().is(py::dtype::of<double>())) {
          return forward_impl<double>(c, weights, x, h0, c0, lengths, training);
        }
        throw py::type_error("x: expected float32 or float64, got " + std::string(py::str(x.dtype())));
      },
      py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("bias"), py::arg("weights"), py::arg("x"),
      py::arg("h0").none(true), py::arg("c0").none(true), py::arg("lengths").none(true),
      py::arg("training"),
      "Whole-sequence forward. Returns (y, h_n, c_n or None, cache or None).");

  m.def(
      "backward",
      [](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers, bool bidirectional,
         bool bias, const std::vector<py::array>& weights, const py::object& cache,
         const py::object& grad_y, const py::object& grad_h_n, const py::object& grad_c_n) {
        const ModelConfig c = make_config(cell, input_size, hidden_size, num_layers, bidirectional, bias);
        if (py::isinstance<rnncore::TrainingCache<float>>(cache)) {
          return backward_impl<float>(c, weights, cache.cast<const rnncore::TrainingCache<float>&>(),
                                      grad_y, grad_h_n, grad_c_n);
        }
        if (py::isinstance<rnncore::TrainingCache<double>>(cache)) {
          return backward_impl<double>(c, weights, cache.cast<const rnncore::TrainingCache<double>&>(),
                                       grad_y, grad_h_n, grad_c_n);
        }
        throw py::type_error("cache: expected a training cache from rnncore._core.forward");
      },
      py::arg("cell"), py::arg("input_size"), py::arg("hidden_size"), py::arg("num_layers"),
      py::arg("bidirectional"), py::arg("bias"), py::arg("weights"), py::arg("cache"),
      py::arg("grad_y").none(true), py::arg("grad_h_n").none(true), py::arg("grad_c_n").none(true),
      "BPTT. Returns (grad_x, grad_h0, grad_c0 or None, [weight grads in the order of weights]).");

  m.def("forward_flops", [](int cell, int64_t input_size, int64_t hidden_size, int64_t num_layers,
                            bool bidirectional, int64_t steps, int64_t batch) {
    return rnncore::forward_flops(make_config(cell, input_size, hidden_size, num_layers, bidirectional, true),
                                  steps, batch);
  });
  m.def("build_info", &build_info, "Compiler, SIMD level, Eigen version, OpenMP and CUDA flags.");
  m.def("get_num_threads", &rnncore::max_threads);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("num_threads: expected >= 1, got " + std::to_string(n));
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    Eigen::setNbThreads(n);
  });
}

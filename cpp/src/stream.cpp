// The streaming step: packed panel matrix-vector products plus cell.h's pointwise math.
#include "rnncore/stream.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <stdexcept>
#include <string>

#include "rnncore/cell.h"
#include "parallel.h"
#include "address_sanitizer.h"
#include "register_hint.h"

// Inline every call made in the function, recursively (GCC and Clang; elsewhere a no-op). Not
// under AddressSanitizer: flattening each cell and size variant there took minutes of compile
// time (CI's sanitizer build) and inlining changes no memory access that ASan checks.
#if defined(__GNUC__) && !defined(RNNCORE_ASAN)
#define RNNCORE_FLATTEN __attribute__((flatten))
#else
#define RNNCORE_FLATTEN
#endif

namespace rnncore {

namespace {

// A panel is up to kPackets SIMD registers tall: as many as its rows fill (a block's last panel
// is cut to its rows rounded up to whole registers, so that a GRU's 16-row n blocks or a 16-unit
// LSTM on AVX-512 do not multiply rows of zeros). The kernel keeps two sets of accumulators (even
// and odd columns), so 2 * kPackets multiply-add chains run at once: enough to hide the FMA
// latency (4 cycles, 2 per cycle on the machines we measured) without spilling registers.
template <typename S>
struct PanelShape {
  using Packet = typename Eigen::internal::packet_traits<S>::type;
  static constexpr int kLanes = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr int kPackets = 4;
  static constexpr int kHeight = kLanes * kPackets;
  // SIMD registers a panel of `rows` rows (at most kHeight) takes.
  static constexpr int64_t packets(int64_t rows) noexcept { return (rows + kLanes - 1) / kLanes; }
};

// The hidden sizes up to kSlicedMax units take a one-pass step (Stream::sliced_frame) when they
// have one (LSTM and GRU, float), where the panel step's scratch round trip costs most; a size
// that is not whole packets then has a last slice part empty. At most 8 slices: 128 units with
// AVX-512 (on the Zen 4 VM, 80-128 units took 0.84-0.95 of the panel step's time, LSTM 100
// 1.01; in one process, six streams each), 64 with AVX2 (on the Zen 3, 128 units in 16 slices
// took 1.00-1.04 of the panel step's time), 32 with SSE.
template <typename S>
constexpr int64_t kSlicedMax = std::min<int64_t>(128, 8 * PanelShape<S>::kLanes);

// A one-pass step's slices are one packet wide, half a packet (8 floats) where the packet holds
// 16 and the layer has 8 units: one slice then runs 256-bit instructions instead of 512-bit ones
// half empty (Zen 4, one process, six streams each: LSTM 1 -> 8 0.74 of the time, GRU 0.79).
// Fewer units keep the 16-float slice: a half slice part empty needs AVX2's masked loads and
// stores, and took 1.02-1.20 of the time at 1 and 5 units. Lanes: the slice's width.
template <typename S, int Lanes>
struct SliceShape {
  using Full = typename PanelShape<S>::Packet;
  static_assert(Lanes == PanelShape<S>::kLanes || 2 * Lanes == PanelShape<S>::kLanes,
                "a slice is a whole packet or half of one");
  using Packet = std::conditional_t<Lanes == PanelShape<S>::kLanes, Full,
                                    typename Eigen::internal::unpacket_traits<Full>::half>;
};
template <typename S>
constexpr int64_t slice_lanes(int64_t H) noexcept {
  return PanelShape<S>::kLanes == 16 && H == 8 ? 8 : PanelShape<S>::kLanes;
}

// Values per lane of a one-pass step's slice (Stream::pack_sliced): the LSTM's 4 gate rows, each
// a bias and I + H weights; the GRU's 4 biases (r, z, n_x, n_h) and 3 rows of I + H weights.
// Checked, for bytes_needed (which the constructor runs before pack_sliced).
inline int64_t sliced_values_per_lane(CellKind cell, int64_t I, int64_t H) {
  const int64_t cols = checked_add(I, H, "input_size + hidden_size");
  return cell == CellKind::Gru
             ? checked_add(4, checked_mul(3, cols, "3 * (input_size + hidden_size)"), "a slice")
             : checked_mul(4, checked_add(1, cols, "a slice"), "a slice");
}

// sum[j] = packet j of bias + W_panel v, for one panel NP registers tall (see Stream::Panel for
// the storage). The summation order depends only on the panel, never on the batch row or batch
// size: bias and the even columns in one chain, the odd columns in another, the two added last.
// Packet: the panel step's, or a one-pass step's half-width one (SliceShape).
template <typename S, int NP, typename Packet = typename PanelShape<S>::Packet>
inline void panel_sums(const S* __restrict panel, const S* __restrict v, int64_t cols,
                       Packet (&sum)[NP]) noexcept {
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  constexpr int L = Eigen::internal::unpacket_traits<Packet>::size, P = NP * L;
  Packet even[NP], odd[NP];
  for (int j = 0; j < NP; ++j) {
    even[j] = pload<Packet>(panel + j * L);
    odd[j] = pset1<Packet>(S(0));
  }
  const S* w = panel + P;
  int64_t k = 0;
  for (; k + 2 <= cols; k += 2, w += 2 * P) {
    const Packet v0 = pset1<Packet>(v[k]);
    const Packet v1 = pset1<Packet>(v[k + 1]);
    for (int j = 0; j < NP; ++j) even[j] = pmadd(pload<Packet>(w + j * L), v0, even[j]);
    for (int j = 0; j < NP; ++j) odd[j] = pmadd(pload<Packet>(w + P + j * L), v1, odd[j]);
  }
  if (k < cols) {
    const Packet v0 = pset1<Packet>(v[k]);
    for (int j = 0; j < NP; ++j) even[j] = pmadd(pload<Packet>(w + j * L), v0, even[j]);
  }
  for (int j = 0; j < NP; ++j) sum[j] = padd(even[j], odd[j]);
}

// out[0:rows] = bias + W_panel v (panel_sums, stored).
template <typename S, int NP>
inline void panel_gemv_packets(const S* __restrict panel, const S* __restrict v, int64_t cols,
                               S* __restrict out, int64_t rows) noexcept {
  using Packet = typename PanelShape<S>::Packet;
  constexpr int L = PanelShape<S>::kLanes, P = NP * L;
  Packet sum[NP];
  panel_sums<S, NP>(panel, v, cols, sum);
  if (rows == P) {
    for (int j = 0; j < NP; ++j) Eigen::internal::pstoreu(out + j * L, sum[j]);
  } else {
    alignas(64) S tail[P];
    for (int j = 0; j < NP; ++j) Eigen::internal::pstore(tail + j * L, sum[j]);
    std::memcpy(out, tail, static_cast<std::size_t>(rows) * sizeof(S));
  }
}

template <typename S>
inline void panel_gemv(const S* __restrict panel, const S* __restrict v, int64_t cols,
                       S* __restrict out, int64_t rows) noexcept {
  static_assert(PanelShape<S>::kPackets == 4, "one case per panel height");
  switch (PanelShape<S>::packets(rows)) {
    case 1: return panel_gemv_packets<S, 1>(panel, v, cols, out, rows);
    case 2: return panel_gemv_packets<S, 2>(panel, v, cols, out, rows);
    case 3: return panel_gemv_packets<S, 3>(panel, v, cols, out, rows);
    default: return panel_gemv_packets<S, 4>(panel, v, cols, out, rows);
  }
}

// Columns [0, count) of a three-packet part of a GRU slice (Stream::pack_sliced), 3 packets per
// column: column 2m into the chains a0, a1, a2, column 2m + 1 into b0, b1, b2 (an odd last
// column into the a chains). Returns where the next part starts.
template <typename S, typename Packet>
inline const S* three_packet_columns(const S* __restrict w, const S* __restrict v, int64_t count,
                                     Packet& a0, Packet& a1, Packet& a2, Packet& b0, Packet& b1,
                                     Packet& b2) noexcept {
  using Eigen::internal::pload;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  constexpr int L = Eigen::internal::unpacket_traits<Packet>::size;
  int64_t k = 0;
  for (; k + 2 <= count; k += 2, w += 6 * L) {
    const Packet v0 = pset1<Packet>(v[k]), v1 = pset1<Packet>(v[k + 1]);
    a0 = pmadd(pload<Packet>(w), v0, a0);
    a1 = pmadd(pload<Packet>(w + L), v0, a1);
    a2 = pmadd(pload<Packet>(w + 2 * L), v0, a2);
    b0 = pmadd(pload<Packet>(w + 3 * L), v1, b0);
    b1 = pmadd(pload<Packet>(w + 4 * L), v1, b1);
    b2 = pmadd(pload<Packet>(w + 5 * L), v1, b2);
  }
  if (k < count) {
    const Packet v0 = pset1<Packet>(v[k]);
    a0 = pmadd(pload<Packet>(w), v0, a0);
    a1 = pmadd(pload<Packet>(w + L), v0, a1);
    a2 = pmadd(pload<Packet>(w + 2 * L), v0, a2);
    w += 3 * L;
  }
  return w;
}

// The GRU's four gate sums of one slice of units (Stream::pack_sliced: biases r, z, n_x, n_h,
// then r, z, n_x for each input column, then r, z, n_h for each hidden one): r and z over [x; h],
// n_x over x and n_h over h, each in the order panel_sums gives the same row in its panel
// (panel_blocks: r and z read [x; h], n_x x and n_h h), so the two layouts give the same bits.
template <typename S, typename Packet>
inline void gru_slice_sums(const S* __restrict w, const S* __restrict x, int64_t I,
                           const S* __restrict h, int64_t H, Packet (&sum)[4]) noexcept {
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  using Eigen::internal::pset1;
  constexpr int L = Eigen::internal::unpacket_traits<Packet>::size;
  Packet r_even = pload<Packet>(w), z_even = pload<Packet>(w + L), x_even = pload<Packet>(w + 2 * L),
         h_even = pload<Packet>(w + 3 * L);
  Packet r_odd = pset1<Packet>(S(0)), z_odd = r_odd, x_odd = r_odd, h_odd = r_odd;
  w = three_packet_columns(w + 4 * L, x, I, r_even, z_even, x_even, r_odd, z_odd, x_odd);
  // Hidden column j is column I + j of [x; h] for r and z, column j of h for n_h: with I odd, its
  // r and z go to the chains of the other parity.
  if (I % 2 == 0) {
    three_packet_columns(w, h, H, r_even, z_even, h_even, r_odd, z_odd, h_odd);
  } else {
    three_packet_columns(w, h, H, r_odd, z_odd, h_even, r_even, z_even, h_odd);
  }
  sum[0] = padd(r_even, r_odd);
  sum[1] = padd(z_even, z_odd);
  sum[2] = padd(x_even, x_odd);
  sum[3] = padd(h_even, h_odd);
}

// Batch rows that panel_rows takes at once: 2 packets x (even, odd) accumulators per row plus
// the 4 weight packets and a broadcast must fit the vector registers (32 with AVX-512, 16 below).
#ifdef EIGEN_VECTORIZE_AVX512
constexpr int kStreamRows = 6;
#else
constexpr int kStreamRows = 2;
#endif

// One pass of panel_rows over the J (1 or 2) registers of the panel from register j0 on.
template <typename S, int R, int J>
inline void panel_rows_pass(const S* __restrict panel, int64_t height, int64_t j0,
                            const S* __restrict v, int64_t v_stride, int64_t cols,
                            S* __restrict out, int64_t out_stride, int64_t rows) noexcept {
  using Shape = PanelShape<S>;
  using Packet = typename Shape::Packet;
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  constexpr int L = Shape::kLanes;
  const int64_t P = height;
  Packet even[R][J], odd[R][J];
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < J; ++j) {
      even[r][j] = pload<Packet>(panel + (j0 + j) * L);
      odd[r][j] = pset1<Packet>(S(0));
    }
  }
  const S* w = panel + P + j0 * L;
  int64_t k = 0;
  for (; k + 2 <= cols; k += 2, w += 2 * P) {
    Packet w0[J], w1[J];
    for (int j = 0; j < J; ++j) {
      w0[j] = pload<Packet>(w + j * L);
      w1[j] = pload<Packet>(w + P + j * L);
      detail::keep_in_register(w0[j]);  // one load for all R rows (register_hint.h)
      detail::keep_in_register(w1[j]);
    }
    for (int r = 0; r < R; ++r) {
      const Packet v0 = pset1<Packet>(v[r * v_stride + k]);
      const Packet v1 = pset1<Packet>(v[r * v_stride + k + 1]);
      for (int j = 0; j < J; ++j) even[r][j] = pmadd(w0[j], v0, even[r][j]);
      for (int j = 0; j < J; ++j) odd[r][j] = pmadd(w1[j], v1, odd[r][j]);
    }
  }
  if (k < cols) {
    for (int r = 0; r < R; ++r) {
      const Packet v0 = pset1<Packet>(v[r * v_stride + k]);
      for (int j = 0; j < J; ++j) even[r][j] = pmadd(pload<Packet>(w + j * L), v0, even[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int j = 0; j < J; ++j) {
      const int64_t first = (j0 + j) * L;
      S* o = out + r * out_stride + first;
      if (first + L <= rows) {
        Eigen::internal::pstoreu(o, padd(even[r][j], odd[r][j]));
      } else {
        alignas(64) S tail[L];
        Eigen::internal::pstore(tail, padd(even[r][j], odd[r][j]));
        std::memcpy(o, tail, static_cast<std::size_t>(rows - first) * sizeof(S));
      }
    }
  }
}

// panel_gemv for R batch rows at once (v: row r at v + r * v_stride, out likewise): each weight
// packet is loaded once for all R rows instead of once per row, which is what bounds a batched
// step (weights of a large layer come from L2 or L3 every step). The panel is walked in passes
// of two registers (one for an odd last) so that R rows' accumulators fit the registers. Each row
// keeps panel_gemv's own chains (bias + even columns, odd columns, summed at the end), so its
// result is the same bit for bit as panel_gemv's: a row's result never depends on the batch size.
template <typename S, int R>
inline void panel_rows(const S* __restrict panel, const S* __restrict v, int64_t v_stride,
                       int64_t cols, S* __restrict out, int64_t out_stride,
                       int64_t rows) noexcept {
  const int64_t packets = PanelShape<S>::packets(rows), height = packets * PanelShape<S>::kLanes;
  int64_t j0 = 0;
  for (; j0 + 2 <= packets; j0 += 2) {
    panel_rows_pass<S, R, 2>(panel, height, j0, v, v_stride, cols, out, out_stride, rows);
  }
  if (j0 < packets) panel_rows_pass<S, R, 1>(panel, height, j0, v, v_stride, cols, out, out_stride, rows);
}

// panel_rows<R> for a run-time count of 1..R rows.
template <typename S, int R>
inline void panel_some_rows(int count, const S* panel, const S* v, int64_t v_stride, int64_t cols,
                            S* out, int64_t out_stride, int64_t rows) noexcept {
  if (count == R) {
    panel_rows<S, R>(panel, v, v_stride, cols, out, out_stride, rows);
  } else if constexpr (R > 1) {
    panel_some_rows<S, R - 1>(count, panel, v, v_stride, cols, out, out_stride, rows);
  }
}

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// A packet with its subnormal lanes replaced by zeros of their sign (stream.h, "Subnormals");
// NaNs and everything else are left alone.
template <typename Packet>
inline Packet flushed(const Packet& a) noexcept {
  using namespace Eigen::internal;
  using S = typename unpacket_traits<Packet>::type;
  const Packet magnitude = pabs(a);
  return pselect(pcmp_lt(magnitude, pset1<Packet>(std::numeric_limits<S>::min())), pxor(a, magnitude), a);
}

// flushed() for one value.
template <typename S>
inline S flushed_value(S a) noexcept {
  return std::abs(a) < std::numeric_limits<S>::min() ? std::copysign(S(0), a) : a;
}

// dst[0..n) = src[0..n), flushed() when `flush`; dst may be src.
template <typename S>
inline void copy_flushed(const S* src, S* dst, int64_t n, bool flush) noexcept {
  using Packet = typename PanelShape<S>::Packet;
  using namespace Eigen::internal;
  constexpr int64_t W = PanelShape<S>::kLanes;
  int64_t j = 0;
  for (; j + W <= n; j += W) {
    const Packet v = ploadu<Packet>(src + j);
    pstoreu(dst + j, flush ? flushed(v) : v);
  }
  for (; j < n; ++j) dst[j] = flush ? flushed_value(src[j]) : src[j];
}

// flushed() over v[0..n).
template <typename S>
inline void flush_subnormals(S* v, int64_t n) noexcept {
  copy_flushed(v, v, n, true);
}

// Values per batch row of a step's scratch: the gate pre-activations and what the cell math
// needs beside them, padded so that every row starts on a cache line.
int64_t scratch_stride(CellKind cell, int64_t H) {
  switch (cell) {
    case CellKind::Lstm: return round_up(5 * H, 16);  // i f g o | tanh(c')
    case CellKind::Gru: return round_up(7 * H, 16);   // r z n_x | 0 0 n_h | hn
    default: return round_up(H, 16);
  }
}

// A run of gate rows [first_row, first_row + rows) that reads columns [col_begin, col_begin +
// cols) of [x; h] and writes its gates at out_offset of a scratch row; cut into panels when packed.
struct PanelBlock {
  int64_t first_row, rows, col_begin, cols, out_offset;
};

// A layer's blocks in packing order. The GRU's r and z read [x; h]; its n reads x and h apart
// because r multiplies only W_hn h + b_hn.
std::vector<PanelBlock> panel_blocks(CellKind cell, int64_t I, int64_t H) {
  if (cell == CellKind::Gru) {
    return {{0, 2 * H, 0, I + H, 0}, {2 * H, H, 0, I, 2 * H}, {2 * H, H, I, H, 5 * H}};
  }
  return {{0, gate_count(cell) * H, 0, I + H, 0}};
}

// Values a block's panels take when packed: per panel, a bias and `cols` weights per row of its
// height (P, the last panel its rows rounded up to whole registers of L).
int64_t packed_elements(const PanelBlock& block, int64_t P, int64_t L) {
  const int64_t columns = checked_add(block.cols, 1, "packed columns");
  const int64_t height = block.rows / P * P + round_up(block.rows % P, L);
  return checked_mul(columns, height, "packed panels * (columns + 1) * panel height");
}

void check_stream_arguments(const ModelConfig& config, int64_t batch_size, int threads) {
  config.validate();
  if (threads < 1) {
    throw std::invalid_argument("rnncore: threads must be at least 1, got " +
                                std::to_string(threads));
  }
  if (config.bidirectional) {
    throw std::invalid_argument(
        "rnncore: a bidirectional model cannot stream (its reverse direction needs the whole "
        "sequence); run it on whole sequences instead");
  }
  if (batch_size < 1) {
    throw std::invalid_argument("rnncore: batch_size must be at least 1, got " +
                                std::to_string(batch_size));
  }
}

// One call of the hot path: holds the stream's in-use mark until it returns (stream.h, Threads).
class InUse {
 public:
  explicit InUse(detail::InUseFlag& flag) : flag_(flag) {
    if (!flag_.try_take()) throw StreamInUseError();
  }
  ~InUse() { flag_.give_back(); }
  InUse(const InUse&) = delete;
  InUse& operator=(const InUse&) = delete;

 private:
  detail::InUseFlag& flag_;
};

}  // namespace

StreamInUseError::StreamInUseError()
    : std::logic_error(
          "rnncore Stream is being used by another thread; a Stream serves one caller at a time: "
          "use one stream per thread, or a lock") {}

template <typename S>
int64_t Stream<S>::bytes_needed(const ModelConfig& config, int64_t batch_size) {
  check_stream_arguments(config, batch_size, 1);
  const int64_t H = config.hidden_size;
  int64_t elements = checked_mul(batch_size, scratch_stride(config.cell, H),
                                 "batch_size * the stream's scratch values per row");
  for (int64_t k = 0; k < config.num_layers; ++k) {
    const int64_t I = config.layer_input_size(k);
    int64_t packed = 0;
    for (const PanelBlock& block : panel_blocks(config.cell, I, H)) {
      packed = checked_add(packed,
                           packed_elements(block, PanelShape<S>::kHeight, PanelShape<S>::kLanes),
                           "the stream's packed weights");
    }
    // A one-pass step's slices (pack_sliced) hold as many values where H is whole slices, more
    // where its last slice is part empty: the larger of the two, whichever the stream packs.
    if (sliced_frame_for(config.cell, H) != nullptr) {
      const int64_t L = slice_lanes<S>(H);
      packed = std::max(packed, checked_mul((H + L - 1) / L * L,
                                            sliced_values_per_lane(config.cell, I, H),
                                            "the stream's packed weights"));
    }
    elements = checked_add(elements, packed, "the stream's packed weights");
    const int64_t state_per_row = config.cell == CellKind::Lstm ? I + 2 * H : I + H;  // [x; h], c
    elements = checked_add(elements,
                           checked_mul(batch_size, state_per_row,
                                       "batch_size * a layer's input and state values per row"),
                           "batch_size * the stream's state and scratch values");
  }
  return static_cast<int64_t>(checked_elements<S>(elements, "the stream's arrays")) *
         static_cast<int64_t>(sizeof(S));
}

template <typename S>
Stream<S>::Stream(const Model<S>& model, int64_t batch_size, int threads)
    : Stream(model.config(), model.weights(), batch_size, threads) {}

template <typename S>
Stream<S>::Stream(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
                  int64_t batch_size, int threads)
    : config_(config), batch_(batch_size), threads_(threads) {
  check_stream_arguments(config, batch_size, threads);
  if (weights.size() != static_cast<std::size_t>(config.num_layers)) {
    throw std::invalid_argument("rnncore: expected " + std::to_string(config.num_layers) +
                                " DirectionWeights (one per layer), got " +
                                std::to_string(weights.size()));
  }
  // Every size product below is one of the terms bytes_needed has checked, so none overflows.
  const int64_t bytes = bytes_needed(config, batch_size);
  scratch_stride_ = scratch_stride(config.cell, config.hidden_size);
  const FrameFn sliced = threads_ == 1 && batch_ == 1 ? sliced_frame_for(config.cell, config.hidden_size)
                                                      : nullptr;
  sliced_ = sliced != nullptr;
  try {
    scratch_.assign(static_cast<std::size_t>(batch_ * scratch_stride_), S(0));
    layers_.resize(static_cast<std::size_t>(config.num_layers));
    for (int64_t k = 0; k < config.num_layers; ++k) pack_layer(k, weights[static_cast<std::size_t>(k)]);
  } catch (const std::bad_alloc&) {
    throw AllocationError("a Stream of batch_size = " + std::to_string(batch_size) + " (" +
                              cell_name(config.cell) + ", input_size " +
                              std::to_string(config.input_size) + ", hidden_size " +
                              std::to_string(config.hidden_size) + ", num_layers " +
                              std::to_string(config.num_layers) + ")",
                          bytes);
  }
  if (threads_ == 1) serial_ = sliced_ ? sliced : serial_frame_for(config.cell, config.hidden_size);
  // The calling thread's OpenMP team starts here rather than in the first step.
  if (threads_ > 1) parallel_team(threads_, [](int, int, StepBarrier&) {});
}

template <typename S>
void Stream<S>::pack_layer(int64_t k, const DirectionWeights<S>& w) {
  if (w.w_ih == nullptr || w.w_hh == nullptr ||
      (config_.bias && (w.b_ih == nullptr || w.b_hh == nullptr))) {
    throw std::invalid_argument("rnncore: layer " + std::to_string(k) +
                                " has a null weight pointer");
  }
  const S* b_ih = config_.bias ? w.b_ih : nullptr;
  const S* b_hh = config_.bias ? w.b_hh : nullptr;
  Layer& layer = layers_[static_cast<std::size_t>(k)];
  const int64_t H = config_.hidden_size, I = config_.layer_input_size(k);
  layer.input_size = I;
  layer.width = I + H;
  if (sliced_) {
    pack_sliced(layer, w.w_ih, w.w_hh, b_ih, b_hh);
  } else {
    for (const PanelBlock& block : panel_blocks(config_.cell, I, H)) {
      add_panels(layer, w.w_ih, w.w_hh, b_ih, b_hh, block.first_row, block.rows, block.col_begin,
                 block.cols, block.out_offset);
    }
  }
  layer.xh.assign(static_cast<std::size_t>(batch_ * layer.width), S(0));
  // Thread t of threads_ takes panels [split[t], split[t + 1]): even shares of the weights (the
  // GRU's r/z panels read [x; h], its n panels x or h alone, so equal panel counts are not equal
  // work).
  double total = 0.0;
  for (const Panel& p : layer.panels) total += static_cast<double>(p.cols + 1);
  layer.split.assign(static_cast<std::size_t>(threads_) + 1, layer.panels.size());
  layer.split[0] = 0;
  double done = 0.0;
  std::size_t t = 1;
  for (std::size_t i = 0; i < layer.panels.size() && t < static_cast<std::size_t>(threads_); ++i) {
    const double work = static_cast<double>(layer.panels[i].cols + 1);
    // Panel i goes to the thread whose share holds the middle of its work.
    while (t < static_cast<std::size_t>(threads_) && done + work / 2 >= total * t / threads_) {
      layer.split[t++] = i;
    }
    done += work;
  }
  if (config_.cell == CellKind::Lstm) layer.cell.assign(static_cast<std::size_t>(batch_ * H), S(0));
}

template <typename S>
void Stream<S>::add_panels(Layer& layer, const S* w_ih, const S* w_hh, const S* b_ih,
                           const S* b_hh, int64_t first_row, int64_t rows, int64_t col_begin,
                           int64_t cols, int64_t out_offset) {
  constexpr int64_t P = PanelShape<S>::kHeight;
  const int64_t I = layer.input_size, H = config_.hidden_size;
  // A bias goes with the matrix it belongs to: b_ih when the panel reads x, b_hh when it reads h.
  const bool reads_x = col_begin < I, reads_h = col_begin + cols > I;
  for (int64_t r0 = 0; r0 < rows; r0 += P) {
    Panel panel{static_cast<int64_t>(layer.packed.size()), col_begin, cols, out_offset + r0,
                std::min(P, rows - r0)};
    const int64_t height = PanelShape<S>::packets(panel.rows) * PanelShape<S>::kLanes;
    layer.packed.resize(layer.packed.size() + static_cast<std::size_t>((cols + 1) * height), S(0));
    S* dst = layer.packed.data() + panel.weights_offset;
    for (int64_t r = 0; r < panel.rows; ++r) {
      const int64_t row = first_row + r0 + r;
      S bias(0);
      if (reads_x && b_ih != nullptr) bias += b_ih[row];
      if (reads_h && b_hh != nullptr) bias += b_hh[row];
      dst[r] = bias;
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t col = col_begin + c;
        dst[(c + 1) * height + r] = col < I ? w_ih[row * I + col] : w_hh[row * H + (col - I)];
      }
    }
    layer.panels.push_back(panel);
  }
}

// Per slice of kLanes units (the last one part empty where H is not a multiple of kLanes: zero
// weights and biases in its empty lanes): the LSTM's is one panel of the gate rows
// i, f, g, o of those units (the bias, then each column of [x; h]); the GRU's holds the biases
// of r, z, n_x and n_h, then r, z, n_x for each column of x, then r, z, n_h for each column of
// h (gru_slice_sums). As many values as the panels hold for the same layer (bytes_needed).
template <typename S>
void Stream<S>::pack_sliced(Layer& layer, const S* w_ih, const S* w_hh, const S* b_ih,
                            const S* b_hh) {
  const int64_t I = layer.input_size, H = config_.hidden_size;
  const int64_t L = slice_lanes<S>(H);
  const bool gru = config_.cell == CellKind::Gru;
  const int64_t per_slice = L * sliced_values_per_lane(config_.cell, I, H);
  // A last slice that is part empty keeps zeros in its empty lanes (their results are not kept).
  const int64_t slices = (H + L - 1) / L;
  layer.packed.assign(static_cast<std::size_t>(slices * per_slice), S(0));
  // The biases as add_panels sums them: a panel reading x takes b_ih, one reading h b_hh.
  const auto bias = [&](int64_t row, bool reads_x, bool reads_h) {
    S sum(0);
    if (reads_x && b_ih != nullptr) sum += b_ih[row];
    if (reads_h && b_hh != nullptr) sum += b_hh[row];
    return sum;
  };
  for (int64_t s = 0; s < slices; ++s) {
    S* dst = layer.packed.data() + s * per_slice;
    for (int64_t lane = 0; lane < std::min<int64_t>(L, H - s * L); ++lane) {
      const int64_t unit = s * L + lane;
      if (!gru) {
        for (int64_t g = 0; g < 4; ++g) {
          const int64_t row = g * H + unit;
          dst[g * L + lane] = bias(row, true, true);
          for (int64_t c = 0; c < I + H; ++c) {
            dst[(c + 1) * 4 * L + g * L + lane] = c < I ? w_ih[row * I + c] : w_hh[row * H + (c - I)];
          }
        }
        continue;
      }
      const int64_t r = unit, z = H + unit, n = 2 * H + unit;
      dst[lane] = bias(r, true, true);
      dst[L + lane] = bias(z, true, true);
      dst[2 * L + lane] = bias(n, true, false);
      dst[3 * L + lane] = bias(n, false, true);
      S* x_cols = dst + 4 * L;
      S* h_cols = x_cols + 3 * L * I;
      for (int64_t c = 0; c < I; ++c) {
        x_cols[c * 3 * L + lane] = w_ih[r * I + c];
        x_cols[c * 3 * L + L + lane] = w_ih[z * I + c];
        x_cols[c * 3 * L + 2 * L + lane] = w_ih[n * I + c];
      }
      for (int64_t c = 0; c < H; ++c) {
        h_cols[c * 3 * L + lane] = w_hh[r * H + c];
        h_cols[c * 3 * L + L + lane] = w_hh[z * H + c];
        h_cols[c * 3 * L + 2 * L + lane] = w_hh[n * H + c];
      }
    }
  }
}

template <typename S>
void Stream<S>::products(Layer& layer, std::size_t panel_begin, std::size_t panel_end,
                         bool backwards) noexcept {
  const int64_t N = batch_, width = layer.width;
  const S* packed = layer.packed.data();
  const S* xh = layer.xh.data();
  S* scratch = scratch_.data();
  // Panel-major: a panel's weights stay in cache while every batch row uses them, in blocks of
  // up to kStreamRows rows per load of each weight, cut as evenly as possible (8 rows: 4 + 4, not
  // 6 + 2); a single row gets panel_gemv's taller panel pass.
  const int64_t blocks = (N + kStreamRows - 1) / kStreamRows;
  const std::size_t count = panel_end - panel_begin;
  for (std::size_t n = 0; n < count; ++n) {
    const Panel& p = layer.panels[backwards ? panel_end - 1 - n : panel_begin + n];
    const S* weights = packed + p.weights_offset;
    if (N == 1) {
      panel_gemv(weights, xh + p.col_begin, p.cols, scratch + p.out_offset, p.rows);
      continue;
    }
    for (int64_t block = 0; block < blocks; ++block) {
      const int64_t b = N / blocks * block + std::min(block, N % blocks);
      const int64_t rows = N / blocks * (block + 1) + std::min(block + 1, N % blocks) - b;
      panel_some_rows<S, kStreamRows>(static_cast<int>(rows), weights,
                                      xh + b * width + p.col_begin, width, p.cols,
                                      scratch + b * scratch_stride_ + p.out_offset,
                                      scratch_stride_, p.rows);
    }
  }
}

template <typename S>
template <CellKind C, int HC>
void Stream<S>::pointwise(Layer& layer, int64_t row_begin, int64_t row_end, S* out,
                          int64_t out_stride, bool flush) noexcept {
  const int64_t H = HC > 0 ? HC : config_.hidden_size, width = layer.width;
  S* xh = layer.xh.data();
  S* scratch = scratch_.data();
  // The new h overwrites the old one in place (cell.h's row functions are element-wise, so
  // h_prev may alias h_new, and c_prev c_new), then goes to `out` (the next layer's input or y).
  for (int64_t b = row_begin; b < row_end; ++b) {
    S* gates = scratch + b * scratch_stride_;
    S* h = xh + b * width + layer.input_size;
    if constexpr (C == CellKind::RnnTanh || C == CellKind::RnnRelu) {
      cell::rnn_forward_row(H, C == CellKind::RnnRelu, gates, h);
    } else if constexpr (C == CellKind::Lstm) {
      S* c = layer.cell.data() + b * H;
      cell::lstm_forward_row(H, gates, c, c, gates + 4 * H, h);
      if (flush) flush_subnormals(c, H);
    } else {
      // b_hn is already in the n_h panel's bias; the hidden r and z rows stay zero.
      cell::gru_forward_row(H, gates, gates + 3 * H, static_cast<const S*>(nullptr), h,
                            gates + 6 * H, h);
    }
    if (flush) flush_subnormals(h, H);
    std::memcpy(out + b * out_stride, h, static_cast<std::size_t>(H) * sizeof(S));
  }
}

template <typename S>
void Stream<S>::pointwise_any(Layer& layer, int64_t row_begin, int64_t row_end, S* out,
                              int64_t out_stride, bool flush) noexcept {
  switch (config_.cell) {
    case CellKind::RnnTanh:
      return pointwise<CellKind::RnnTanh, 0>(layer, row_begin, row_end, out, out_stride, flush);
    case CellKind::RnnRelu:
      return pointwise<CellKind::RnnRelu, 0>(layer, row_begin, row_end, out, out_stride, flush);
    case CellKind::Lstm:
      return pointwise<CellKind::Lstm, 0>(layer, row_begin, row_end, out, out_stride, flush);
    case CellKind::Gru:
      return pointwise<CellKind::Gru, 0>(layer, row_begin, row_end, out, out_stride, flush);
  }
}

template <typename S>
void Stream<S>::step(const S* x, S* y) {
  const InUse call(in_use_);
  step_frame(x, y);
}

template <typename S>
void Stream<S>::load_input(const S* x, bool flush) noexcept {
  Layer& first = layers_[0];
  const int64_t I = first.input_size;
  // One pass, no library call: a call to memcpy and a second pass to flush took 5-8% of a
  // 16-unit step (LSTM and GRU, input 1, paired in one process on the Zen 3).
  for (int64_t b = 0; b < batch_; ++b) copy_flushed(x + b * I, first.xh.data() + b * first.width, I, flush);
}

template <typename S>
void Stream<S>::step_frame(const S* x, S* y) noexcept {
  if (serial_ != nullptr) {
    (this->*serial_)(x, y);
  } else {
    team_frame(x, y);
  }
  reverse_ = !reverse_;
}

// Everything a serial step calls is inlined into it (RNNCORE_FLATTEN), so that with HC known the
// cell math of cell.h runs with its trip counts known to the compiler: its packet loop unrolled,
// its tail for sizes that are not a multiple of the SIMD width removed, no call per function.
template <typename S>
template <CellKind C, int HC>
RNNCORE_FLATTEN void Stream<S>::serial_frame(const S* x, S* y) noexcept {
  const bool flush = flush_denormals();
  load_input(x, flush);
  const int64_t L = config_.num_layers, H = HC > 0 ? HC : config_.hidden_size;
  for (int64_t k = 0; k < L; ++k) {
    Layer& layer = layers_[static_cast<std::size_t>(k)];
    products(layer, 0, layer.panels.size(), reverse_);
    Layer* next = k + 1 == L ? nullptr : &layers_[static_cast<std::size_t>(k + 1)];
    pointwise<C, HC>(layer, 0, batch_, next == nullptr ? y : next->xh.data(),
                     next == nullptr ? H : next->width, flush);
  }
}

// The hidden sizes that get a step of their own (a model of another size runs the generic one:
// the same code with the size read at run time, the same results bit for bit).
template <typename S>
typename Stream<S>::FrameFn Stream<S>::serial_frame_for(CellKind cell, int64_t hidden_size) noexcept {
  const auto sized = [&](auto cell_constant) -> FrameFn {
    constexpr CellKind C = decltype(cell_constant)::value;
    switch (hidden_size) {
      case 16: return &Stream::serial_frame<C, 16>;
      case 32: return &Stream::serial_frame<C, 32>;
      case 64: return &Stream::serial_frame<C, 64>;
      case 128: return &Stream::serial_frame<C, 128>;
      case 256: return &Stream::serial_frame<C, 256>;
      default: return &Stream::serial_frame<C, 0>;
    }
  };
  switch (cell) {
    case CellKind::Lstm: return sized(std::integral_constant<CellKind, CellKind::Lstm>());
    case CellKind::Gru: return sized(std::integral_constant<CellKind, CellKind::Gru>());
    case CellKind::RnnRelu: return &Stream::serial_frame<CellKind::RnnRelu, 0>;
    case CellKind::RnnTanh: break;
  }
  return &Stream::serial_frame<CellKind::RnnTanh, 0>;
}

// The one-pass step (batch 1, one thread, sliced layout): each slice's gate sums stay in
// registers and go straight into cell.h's packet math (the same functions the row passes call,
// so the same bits), instead of a scratch row written by every panel and read back by the cell
// math; a slice's cell math can then overlap the next slice's products. The new h goes to `out`
// slice by slice and into [x; h] once every slice has read the old one. HC = 0: a hidden size
// read at run time in NS slices, whose last one may hold fewer units than a packet (its state is
// read and written with masked loads and stores, cell.h's fused::load_first / store_first).
template <typename S>
template <CellKind C, int HC, int NS, int Lanes>
RNNCORE_FLATTEN void Stream<S>::sliced_frame(const S* x, S* y) noexcept {
  using Packet = typename SliceShape<S, Lanes>::Packet;
  using namespace Eigen::internal;
  constexpr int64_t L = Lanes;
  static_assert(HC % L == 0, "whole slices where the size is known to the compiler");
  static_assert(HC > 0 || NS > 0, "a size or a slice count");
  const int64_t H = HC > 0 ? HC : config_.hidden_size;
  constexpr int64_t kSlices = HC > 0 ? HC / L : NS;
  const bool flush = flush_denormals();
  load_input(x, flush);
  const int64_t layers = config_.num_layers;
  for (int64_t k = 0; k < layers; ++k) {
    Layer& layer = layers_[static_cast<std::size_t>(k)];
    const int64_t I = layer.input_size;
    S* xh = layer.xh.data();
    S* out = k + 1 == layers ? y : layers_[static_cast<std::size_t>(k + 1)].xh.data();
    // Every other step walks the slices back to front, as the panel step does (reverse_).
    const int64_t per_slice = static_cast<int64_t>(layer.packed.size()) / kSlices;  // pack_sliced's
    const auto slice_at = [&](int64_t n) { return reverse_ ? kSlices - 1 - n : n; };
    const auto sums = [&](int64_t slice, Packet (&sum)[4]) {
      const S* w = layer.packed.data() + slice * per_slice;
      detail::hide_value(xh);  // every slice broadcasts [x; h] afresh (register_hint.h)
      if constexpr (C == CellKind::Lstm) {
        panel_sums<S, 4>(w, xh, I + H, sum);
      } else {
        // H read at run time: known to the compiler, the hidden-column loop was unrolled in full
        // and its loads scheduled ahead of the FMAs, spilling to the stack (GRU 1 -> 32: twice
        // the time of the panel step).
        gru_slice_sums<S>(w, xh, I, xh + I, config_.hidden_size, sum);
      }
    };
    // Units [u, u + units.count) of a state array: a whole packet, or its first units.
    using Units = cell::fused::PacketUnits<S, Packet>;
    const auto cell_math = [&](int64_t slice, Packet (&sum)[4]) {
      const int64_t u = slice * L;
      const Units units{HC > 0 ? L : std::min(L, H - u)};
      Packet h;
      if constexpr (C == CellKind::Lstm) {
        S* c_row = layer.cell.data() + u;
        Packet c, tanh_c;
        cell::fused::lstm_forward(sum[0], sum[1], sum[2], sum[3], units.load(c_row), c, tanh_c, h);
        units.store(c_row, flush ? flushed(c) : c);
      } else {
        const Packet zero = pset1<Packet>(S(0));  // the hidden r and z sums are in sum[0], sum[1]
        Packet r, z, n_gate;
        cell::fused::gru_forward(sum[0], sum[1], sum[2], zero, zero, sum[3], units.load(xh + I + u),
                                 r, z, n_gate, h);
      }
      units.store(out + u, flush ? flushed(h) : h);
    };
    // Two slices at a time, both products first: the second slice's product then runs while the
    // first one's cell math waits on its activations, and the two cell maths run side by side
    // (one slice at a time, the out-of-order core did not overlap them: paired in one process on
    // the Zen 3, pairs took 0.91-0.97 of the time at LSTM 16 and 32, 0.87-0.88 at GRU 16).
    int64_t n = 0;
    for (; n + 2 <= kSlices; n += 2) {
      Packet first[4], second[4];
      sums(slice_at(n), first);
      sums(slice_at(n + 1), second);
      cell_math(slice_at(n), first);
      cell_math(slice_at(n + 1), second);
    }
    if constexpr (kSlices % 2 == 1) {
      Packet last[4];
      sums(slice_at(n), last);
      cell_math(slice_at(n), last);
    }
    if constexpr (HC > 0) {
      std::memcpy(xh + I, out, static_cast<std::size_t>(H) * sizeof(S));
    } else {
      // By slices with the masked tail: copy_flushed's scalar tail took 1.06x the step at GRU
      // 1 -> 12 (one process, six streams each, Zen 4).
      for (int64_t u = 0; u < H; u += L) {
        const Units units{std::min(L, H - u)};
        units.store(xh + I + u, units.load(out + u));
      }
    }
  }
}

// The one-pass step for this cell and hidden size, or nullptr where it has none: float with SIMD
// tanh only, and the sizes where it measured faster than the panel step (batch 1, one thread,
// input 1, 2-vCPU Zen 3, paired in one process, 3 runs: time against the panel step's LSTM 16
// 0.80-0.83, 32 0.86-0.88, 64 0.89-0.92, GRU 16 0.77-0.80, 32 0.88-0.94, 64 0.92-0.95; LSTM 128
// 1.00-1.04, so 128 and up keep the panel step; AVX-512 builds go to 128: kSlicedMax). 16, 32
// and 64 units get a step compiled for the size; the others up to kSlicedMax one for their count
// of slices.
template <typename S>
typename Stream<S>::FrameFn Stream<S>::sliced_frame_for(CellKind cell, int64_t hidden_size) noexcept {
  if constexpr (cell::fused::enabled<S>()) {
    constexpr int64_t L = PanelShape<S>::kLanes;
    const auto sized = [&](auto cell_constant) -> FrameFn {
      constexpr CellKind C = decltype(cell_constant)::value;
      switch (hidden_size) {
        case 16: return &Stream::sliced_frame<C, 16, 0, L>;
        case 32: return &Stream::sliced_frame<C, 32, 0, L>;
        case 64: return &Stream::sliced_frame<C, 64, 0, L>;
        default: break;
      }
      if (hidden_size > kSlicedMax<S>) return nullptr;
      if constexpr (L == 16) {
        if (slice_lanes<S>(hidden_size) == 8) return &Stream::sliced_frame<C, 0, 1, 8>;
      }
      switch ((hidden_size + L - 1) / L) {
        case 1: return &Stream::sliced_frame<C, 0, 1, L>;
        case 2: return &Stream::sliced_frame<C, 0, 2, L>;
        case 3: return &Stream::sliced_frame<C, 0, 3, L>;
        case 4: return &Stream::sliced_frame<C, 0, 4, L>;
        case 5: return &Stream::sliced_frame<C, 0, 5, L>;
        case 6: return &Stream::sliced_frame<C, 0, 6, L>;
        case 7: return &Stream::sliced_frame<C, 0, 7, L>;
        case 8: return &Stream::sliced_frame<C, 0, 8, L>;
        default: return nullptr;
      }
    };
    static_assert(kSlicedMax<S> / L <= 8, "a case per slice count");
    if (cell == CellKind::Lstm) return sized(std::integral_constant<CellKind, CellKind::Lstm>());
    if (cell == CellKind::Gru) return sized(std::integral_constant<CellKind, CellKind::Gru>());
  }
  return nullptr;
}

template <typename S>
void Stream<S>::team_frame(const S* x, S* y) noexcept {
  FlushDenormals flush_all;  // (parallel.h; a team's threads do the same)
  const bool flush = flush_denormals();
  const int64_t N = batch_, H = config_.hidden_size, L = config_.num_layers;
  load_input(x, flush);
  // Each thread takes a share of every layer's panels, then of its batch rows for the cell
  // math; every panel and row is computed by one thread with the same code, so the results are
  // the same bit for bit whatever the thread count.
  const auto layers = [&](int thread, int team, StepBarrier& barrier) {
    for (int64_t k = 0; k < L; ++k) {
      Layer& layer = layers_[static_cast<std::size_t>(k)];
      if (team == threads_) {
        products(layer, layer.split[static_cast<std::size_t>(thread)],
                 layer.split[static_cast<std::size_t>(thread) + 1], reverse_);
      } else {  // fewer threads than asked for (a nested parallel region): one takes them all
        if (thread == 0) products(layer, 0, layer.panels.size(), reverse_);
      }
      barrier.wait();  // the cell math of a row reads gates from every panel
      const bool top = k + 1 == L;
      Layer* next = top ? nullptr : &layers_[static_cast<std::size_t>(k + 1)];
      pointwise_any(layer, N * thread / team, N * (thread + 1) / team, top ? y : next->xh.data(),
                    top ? H : next->width, flush);
      barrier.wait();  // the next layer's products read every row's h
    }
  };
  parallel_team(threads_, layers);
}

template <typename S>
void Stream<S>::step_many(int64_t steps, const S* x, S* y) {
  const InUse call(in_use_);
  const int64_t in = batch_ * config_.input_size, out = batch_ * config_.hidden_size;
  // x + t * in and y + t * out for every t < steps stay inside arrays that can exist.
  checked_elements<S>(checked_mul(steps, in, "steps * batch_size * input_size"), "step_many's x");
  checked_elements<S>(checked_mul(steps, out, "steps * batch_size * hidden_size"), "step_many's y");
  for (int64_t t = 0; t < steps; ++t) step_frame(x + t * in, y + t * out);
}

template <typename S>
void Stream<S>::reset() {
  const InUse call(in_use_);
  for (Layer& layer : layers_) {
    std::fill(layer.xh.begin(), layer.xh.end(), S(0));
    std::fill(layer.cell.begin(), layer.cell.end(), S(0));
  }
}

template <typename S>
void Stream<S>::reset_row(int64_t row) {
  reset_rows(&row, 1);
}

template <typename S>
void Stream<S>::reset_rows(const int64_t* rows, int64_t count) {
  const InUse call(in_use_);
  for (int64_t i = 0; i < count; ++i) {
    if (rows[i] < 0 || rows[i] >= batch_) {
      throw std::out_of_range("rnncore: reset_row: row " + std::to_string(rows[i]) +
                              " is outside 0.." + std::to_string(batch_ - 1) + " (batch_size " +
                              std::to_string(batch_) + ")");
    }
  }
  const int64_t H = config_.hidden_size;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t row = rows[i];
    for (Layer& layer : layers_) {
      S* h = layer.xh.data() + row * layer.width + layer.input_size;
      std::fill(h, h + H, S(0));
      if (!layer.cell.empty()) std::fill(layer.cell.data() + row * H, layer.cell.data() + (row + 1) * H, S(0));
    }
  }
}

template <typename S>
void Stream<S>::get_state(S* h, S* c) const {
  const InUse call(in_use_);
  const int64_t N = batch_, H = config_.hidden_size;
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    const Layer& layer = layers_[k];
    for (int64_t b = 0; b < N; ++b) {
      const int64_t at = (static_cast<int64_t>(k) * N + b) * H;
      std::memcpy(h + at, layer.xh.data() + b * layer.width + layer.input_size,
                  static_cast<std::size_t>(H) * sizeof(S));
      if (c != nullptr && !layer.cell.empty()) {
        std::memcpy(c + at, layer.cell.data() + b * H, static_cast<std::size_t>(H) * sizeof(S));
      }
    }
  }
}

template <typename S>
void Stream<S>::set_state(const S* h, const S* c) {
  const InUse call(in_use_);
  const int64_t N = batch_, H = config_.hidden_size;
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    Layer& layer = layers_[k];
    for (int64_t b = 0; b < N; ++b) {
      const int64_t at = (static_cast<int64_t>(k) * N + b) * H;
      S* h_row = layer.xh.data() + b * layer.width + layer.input_size;
      if (h != nullptr) {
        std::memcpy(h_row, h + at, static_cast<std::size_t>(H) * sizeof(S));
      } else {
        std::fill(h_row, h_row + H, S(0));
      }
      if (!layer.cell.empty()) {
        S* c_row = layer.cell.data() + b * H;
        if (c != nullptr) {
          std::memcpy(c_row, c + at, static_cast<std::size_t>(H) * sizeof(S));
        } else {
          std::fill(c_row, c_row + H, S(0));
        }
      }
    }
  }
}

template class Stream<float>;
template class Stream<double>;

}  // namespace rnncore

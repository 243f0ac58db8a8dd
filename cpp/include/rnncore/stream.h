// Frame-by-frame inference with the state carried between calls: the real-time path.
//
//   rnncore::Model<float> model = rnncore::load_model<float>("model.safetensors");  // io.h
//   rnncore::Stream<float> stream(model, /*batch_size=*/1);
//   for (each frame) stream.step(frame, output);     // frame [N, I] in, output [N, H] out
//
// Layout (dense, C order):
//   x  [N, I]          one frame per batch row (step); [T, N, I] for step_many
//   y  [N, H]          the top layer's new h; [T, N, H] for step_many
//   h  [L, N, H]       the state of every layer, as the model's h0 / h_n
//   c  [L, N, H]       LSTM only
// Each batch row is an independent stream: reset_row() restarts one while the others go on, and
// a row's result does not depend on the batch size or on the other rows (bit for bit).
//
// How a step is fast. At construction the weights of each layer are packed once, RTNeural
// style, so that a step is one fused matrix-vector product over [x; h] per layer:
//   gates = [W_ih | W_hh] [x; h] + (b_ih + b_hh)
// The packed matrix is cut into panels of a few SIMD registers' worth of rows; each panel's
// columns are stored contiguously (with its bias first), so a step streams the weights once,
// front to back, with the accumulators held in registers. The GRU's n rows are two panel groups
// (W_in x + b_in and W_hn h + b_hn) because r multiplies only the second; no zero blocks are
// multiplied. With several batch rows, each weight packet is loaded once for a block of up to 6
// rows (2 below AVX-512), every row keeping the accumulation order a single row gets, so a row's
// result does not depend on the batch size. The pointwise part is cell.h's, the same code the
// sequence kernels run. With one thread, a step is one function compiled for the cell and, for
// hidden sizes 16, 32, 64, 128 and 256, for the size (picked at construction), with all it calls
// inlined: no dispatch per step, cell.h's loops with known trip counts. Every other step walks
// the panels back to front, so what the previous step read last is read first, still cached.
// A single stream (batch 1) on one thread of an LSTM or GRU of up to 128 units with AVX-512 (64
// with AVX2, 32 with SSE only; float) takes a one-pass step instead: its weights are packed by
// slices of one SIMD register's worth of units (the LSTM's i, f, g, o rows of those units; the
// GRU's r, z, n rows), so that a slice's gate sums stay in registers and go straight into the cell
// math, with no scratch row between the product and the cell math; slices go two at a time, both
// products first, so that one slice's product runs while the other's cell math waits on its
// activations. Each gate row is summed in the same order as in its panel and the cell math is the
// same code, so the results are the same bit for bit as the panel step's (and so as a batch's or a
// team's). A size that is not whole registers (12, 20, 40 units) has a last slice part empty: zero
// weights in its empty lanes, its state read and written with masked loads and stores. With
// AVX-512 a layer of 8 units takes one slice 8 floats wide.
//
// Subnormals. While flush_denormals() is on (parallel.h), a stream flushes subnormal values to
// zero like the other kernels, but without touching the thread's floating-point control state
// (MXCSR): reading, setting and restoring it costs ~40 ns a step on Zen 3, a fifth of a
// 16-unit LSTM's step. Instead it flushes what it carries from step to step: the frame as it is
// read (subnormal inputs read as zero) and the new h and c before they are kept and returned
// (subnormal results become zeros of the same sign). So no subnormal lives on from one step to
// the next (a decaying state is where they would cost ~100 cycles per operation, every step).
// A subnormal intermediate inside one step (a product of two tiny values) is not flushed; it
// changes a result by less than the smallest normal number (1.2e-38 in float32), and where
// threads > 1 the team's threads, which flush in hardware (parallel.h), may differ from one
// thread by that much. The caller's control state is never changed.
//
// The hot path (step, step_many, reset, reset_row(s), get_state, set_state) never allocates: all
// memory is taken at construction, whose sizes are checked first (checked.h). A Stream holds its
// own packed copy of the weights: changing the model afterwards does not change the stream.
//
// Threads: a Stream serves one caller at a time. Each call of the hot path marks the stream in
// use on entry (one atomic exchange) and clears the mark on return; a call that finds the mark
// set, because another thread is inside a call on the same stream, throws StreamInUseError at
// once and changes nothing. Overlapping calls are a bug in the caller, reported rather than
// silently mixing two callers' frames into one state; they are never serialised. A program that
// steps from several threads gives each thread its own Stream (they share nothing), or holds
// its own lock around every call. Different Streams may be used concurrently without limit.
// (Copying, moving or destroying a stream while a call is inside it is not detected.)
// So the hot path is not noexcept: it throws StreamInUseError on such misuse, reset_row(s)
// std::out_of_range for a row outside the batch and step_many std::length_error for a `steps`
// whose arrays cannot exist; used correctly it never throws.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <vector>

#include "rnncore/checked.h"
#include "rnncore/model.h"
#include "rnncore/sequence.h"

namespace rnncore {

namespace detail {
// 64-byte aligned storage (a cache line; enough for any SIMD load the kernels issue).
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  static constexpr std::size_t alignment = 64;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(kMaxArrayBytes) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(alignment)));
  }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p, std::align_val_t(alignment)); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const AlignedAllocator<U>&) const noexcept { return false; }
};
template <typename T>
using AlignedVector = std::vector<T, AlignedAllocator<T>>;

// The mark that a call is inside a Stream (see "Threads" above). A copy of a Stream starts
// unmarked: the mark belongs to a call on one object, not to its contents.
class InUseFlag {
 public:
  InUseFlag() noexcept = default;
  InUseFlag(const InUseFlag&) noexcept {}
  InUseFlag& operator=(const InUseFlag&) noexcept { return *this; }
  // True when this caller took the mark; false when another call holds it.
  bool try_take() noexcept { return !busy_.exchange(true, std::memory_order_acquire); }
  void give_back() noexcept { busy_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> busy_{false};
};
}  // namespace detail

// Thrown by a Stream call that overlaps another call on the same Stream (see "Threads" above).
class StreamInUseError : public std::logic_error {
 public:
  StreamInUseError();
};

template <typename S>
class Stream {
 public:
  // Packs the weights of a unidirectional model for batch_size independent streams, all starting
  // from the zero state. Throws std::invalid_argument for a bidirectional model (its reverse
  // direction needs the whole sequence), batch_size < 1 or threads < 1; std::length_error when
  // the stream's arrays for batch_size rows would not fit in 64 bits (see bytes_needed), and
  // AllocationError (a std::bad_alloc) when the system cannot supply them.
  //
  // threads > 1: each step shares every layer's weight panels, then its batch rows, among that
  // many OpenMP threads (two barriers per layer; the same results bit for bit). It pays where a
  // layer's weights are large (a 256-unit LSTM's 2.1 MB: each core then reads half of them from
  // its own L2) and steps follow each other closely; between steps the other threads spin for a
  // while and then sleep (OpenMP's wait policy), and a step that wakes them waits for that. The
  // team is started here for the constructing thread; a step from another thread starts its
  // own team the first time.
  Stream(const Model<S>& model, int64_t batch_size, int threads = 1);
  // The same from weight views laid out as in sequence.h (biases read only when config.bias).
  Stream(const ModelConfig& config, const std::vector<DirectionWeights<S>>& weights,
         int64_t batch_size, int threads = 1);

  // Bytes a Stream of this configuration and batch_size allocates at most (packed weights, state
  // and scratch; a size that a one-pass step packs by slices, part empty, counts the larger of its
  // two packings), computed without allocating. Throws std::invalid_argument like the constructor
  // and std::length_error, naming batch_size, where the sizes do not fit in 64 bits.
  static int64_t bytes_needed(const ModelConfig& config, int64_t batch_size);

  const ModelConfig& config() const noexcept { return config_; }
  int64_t batch_size() const noexcept { return batch_; }
  int threads() const noexcept { return threads_; }
  int64_t input_size() const noexcept { return config_.input_size; }
  int64_t output_size() const noexcept { return config_.hidden_size; }
  // Elements of h (and of c): num_layers * batch_size * hidden_size.
  int64_t state_size() const noexcept { return config_.num_layers * batch_ * config_.hidden_size; }
  bool has_cell_state() const noexcept { return config_.cell == CellKind::Lstm; }

  // Each call below throws StreamInUseError, having done nothing, while another call on this
  // stream is in progress (see "Threads" above).

  // One frame for every batch row: x [N, I] in, y [N, H] out. y may alias x.
  void step(const S* x, S* y);
  // `steps` frames in a row: x [T, N, I], y [T, N, H]; the same as calling step T times (bit for
  // bit). y may alias x only when I == H. Throws std::length_error, having done nothing, when
  // steps * N * I or steps * N * H does not fit in 64 bits.
  void step_many(int64_t steps, const S* x, S* y);

  // Every row back to the zero state.
  void reset();
  // One row back to the zero state; throws std::out_of_range for a row outside 0..N-1.
  void reset_row(int64_t row);
  // Rows rows[0..count) back to the zero state in one call; throws std::out_of_range, having
  // reset none, when any is outside 0..N-1.
  void reset_rows(const int64_t* rows, int64_t count);

  // Copies the state out: h [L, N, H] and, for the LSTM, c [L, N, H] (c may be nullptr; it is
  // not touched for the other cells).
  void get_state(S* h, S* c) const;
  // Sets the state: h [L, N, H] and c [L, N, H]; nullptr means zeros (c is ignored for cells
  // other than the LSTM).
  void set_state(const S* h, const S* c);

 private:
  // A block of up to panel-height gate rows that read columns [col_begin, col_begin + cols) of
  // [x; h]. Its storage (at weights_offset in the layer's packed buffer) is the bias, then each
  // column's weights, each column `rows` rounded up to whole SIMD registers, zero-padded.
  struct Panel {
    int64_t weights_offset;
    int64_t col_begin;
    int64_t cols;
    int64_t out_offset;  // where row 0 of the panel goes in a batch row's scratch
    int64_t rows;
  };
  struct Layer {
    int64_t input_size = 0;
    int64_t width = 0;                  // input_size + hidden_size: a row of xh
    std::vector<Panel> panels;
    std::vector<std::size_t> split;     // [threads + 1]: each thread's first panel
    detail::AlignedVector<S> packed;
    detail::AlignedVector<S> xh;        // [N, width]: the layer's input, then its own h
    detail::AlignedVector<S> cell;      // [N, H], LSTM
  };

  // step's work, with in_use_ already taken (step_many runs it once per frame).
  void step_frame(const S* x, S* y) noexcept;
  // step_frame on one thread for cell C; HC > 0 is the hidden size known to the compiler (the
  // common sizes get their own instantiation), 0 reads it from config_. Chosen once, at
  // construction, so that a step does not dispatch on the cell or the sizes.
  template <CellKind C, int HC>
  void serial_frame(const S* x, S* y) noexcept;
  using FrameFn = void (Stream::*)(const S*, S*) noexcept;
  static FrameFn serial_frame_for(CellKind cell, int64_t hidden_size) noexcept;
  // The one-pass step of a batch-1 stream on one thread (stream.cpp), for the cells and hidden
  // sizes that have one (nullptr for the others); its weights are packed by pack_sliced. HC > 0:
  // the hidden size known to the compiler; 0: read from config_, in NS slices, the last one
  // possibly part empty. Lanes: a slice's width (a SIMD register, or half of one).
  template <CellKind C, int HC, int NS, int Lanes>
  void sliced_frame(const S* x, S* y) noexcept;
  static FrameFn sliced_frame_for(CellKind cell, int64_t hidden_size) noexcept;
  void pack_sliced(Layer& layer, const S* w_ih, const S* w_hh, const S* b_ih, const S* b_hh);
  // The team's step_frame (threads_ > 1).
  void team_frame(const S* x, S* y) noexcept;
  // x into the first layer's [x; h] rows, flushing subnormals when asked.
  void load_input(const S* x, bool flush) noexcept;
  void pack_layer(int64_t layer, const DirectionWeights<S>& w);
  void add_panels(Layer& layer, const S* w_ih, const S* w_hh, const S* b_ih, const S* b_hh,
                  int64_t first_row, int64_t rows, int64_t col_begin, int64_t cols,
                  int64_t out_offset);
  // The gates of every batch row from panels [panel_begin, panel_end) of the layer, walked
  // backwards when `backwards` (see reverse_).
  void products(Layer& layer, std::size_t panel_begin, std::size_t panel_end,
                bool backwards) noexcept;
  // The cell math of rows [row_begin, row_end); each row's new h also goes to out + b * out_stride.
  // flush: subnormal values of the new state become zeros (see "Subnormals" above).
  template <CellKind C, int HC>
  void pointwise(Layer& layer, int64_t row_begin, int64_t row_end, S* out, int64_t out_stride,
                 bool flush) noexcept;
  void pointwise_any(Layer& layer, int64_t row_begin, int64_t row_end, S* out,
                     int64_t out_stride, bool flush) noexcept;

  ModelConfig config_;
  int64_t batch_ = 0;
  int threads_ = 1;
  int64_t scratch_stride_ = 0;          // per batch row
  std::vector<Layer> layers_;
  detail::AlignedVector<S> scratch_;    // [N, scratch_stride_]
  mutable detail::InUseFlag in_use_;   // taken by every call of the hot path, get_state too
  FrameFn serial_ = nullptr;            // threads_ == 1: serial_frame for this cell and size
  // Every other step walks the panels back to front: what the last step read last is then read
  // first, while still in cache. A layer a little larger than the L2 (LSTM 128->128: 528 KB
  // against Zen 3's 512 KiB) then mostly stays there instead of being evicted in full every step.
  bool reverse_ = false;
  bool sliced_ = false;                 // the layers are packed for sliced_frame
};

extern template class Stream<float>;
extern template class Stream<double>;

}  // namespace rnncore

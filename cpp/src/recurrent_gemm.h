// The recurrent product of the time loop, out[N, C] (+)= a[N, K] * B[K, C], with B packed once
// per call.
//
// Why not Eigen's GEMM: Eigen packs both operands on every product. In the time loop the weight
// operand (W_hh, G*H x H) is the large one and the state (N x H) the small one, so at batch
// 1..64 repacking W_hh each step costs as much as the multiply (at H = 1024 it is a 16 MB copy
// per step). Here B is packed once per call into column panels of kPanel = 2 SIMD packets,
// zero-padded, and each step streams every panel once while a block of rows of `a` sits in
// registers (a broadcast-FMA micro-kernel, the layout BLIS and oneDNN use).
//
// Panels are grouped by "chunk": panel (group g, chunk c) holds columns
// g * group_width + c * kPanel ... + kPanel - 1 (clipped to the group). Products run on ranges of
// "slots", the SIMD packets of a group (chunk c holds slots 2c and 2c + 1). When a threaded time
// loop packs W_hh^T the groups are the gates, so one slot covers the same hidden units in every
// gate and a thread that owns a range of slots can run the pointwise cell math for those units
// without waiting for the others; otherwise all columns are one group.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "rnncore/memory.h"
#include "parallel.h"
#include "register_hint.h"

namespace rnncore {
namespace detail {

// The rows of a row-major operand `a` of a product: row r starts at
// base + (index != nullptr ? index[r] : r) * stride. With an index a product reads its rows
// where they lie, e.g. a call's inputs in the caller's order for a product over the rows sorted
// by length (BatchLayout::caller_rows), with no gathered copy.
template <typename S>
struct RowsOf {
  const S* base;
  int64_t stride;
  const int64_t* index = nullptr;
  const S* row(int64_t r) const noexcept { return base + (index != nullptr ? index[r] : r) * stride; }
  // The rows from r0 on.
  RowsOf from(int64_t r0) const noexcept {
    return index != nullptr ? RowsOf{base, stride, index + r0} : RowsOf{base + r0 * stride, stride, nullptr};
  }
};

template <typename S>
class PackedPanels {
 public:
  using Packet = typename Eigen::internal::packet_traits<S>::type;
  static constexpr int kPacket = Eigen::internal::unpacket_traits<Packet>::size;
  static constexpr int kPanel = 2 * kPacket;
  // Rows of `a` per micro-kernel call: 2 * kRows accumulators + 2 panel packets + 1 broadcast
  // must fit the vector registers (16 below AVX-512, 32 with it; 8 rows measured ~5-10% above 6
  // there on large row counts, 12 no better).
#ifdef EIGEN_VECTORIZE_AVX512
  static constexpr int kRows = 8;
  // Panels walked at once by the few-row kernel for 1, 2, 3 rows: 2 * rows * panels
  // accumulators next to the rows' broadcasts.
  static constexpr int kFewRowPanels[4] = {0, 4, 4, 4};
  // Bytes of a panel per depth slice (see kDepthSlice): 64 KiB, 512 steps of depth. Each slice
  // ends with the tile's accumulators added to the output, so fewer slices mean fewer passes
  // over the output and fewer micro-kernel calls; the panel slice then sits in L2, not L1, which
  // its stream (128 bytes per 16 FMAs) does not notice. Measured on the 2-vCPU AMD EPYC Zen 4 VM
  // against 16 KiB (paired in one process, a control run as the baseline): inference 2-8% faster
  // at H >= 256, training 0.5-10%, no shape slower (bench/README.md, "Depth slices of 64 KiB").
  static constexpr int64_t kSliceBytes = 65536;
#else
  static constexpr int kRows = 6;
  static constexpr int kFewRowPanels[4] = {0, 4, 3, 2};
  // 16 KiB, 256 steps of depth: the AVX2 build showed no clear gain from 64 KiB on the same Zen 4
  // (bench/README.md), and the AVX2 machine (Zen 3) was not measured.
  static constexpr int64_t kSliceBytes = 16384;
#endif
  // Fewer rows than this go to the few-row kernel: a row block of them would hold fewer than
  // 8 accumulators, too few to hide the FMA latency.
  static constexpr int kMinBlockRows = 4;
  // Depth per slice: kSliceBytes of a panel. Every kernel sums the depth slice by slice (each
  // slice's sum added to the output), so an output has the same bits whichever kernel computes it.
  // Prefetch distance: 4 KiB of panel ahead (measured best among 2, 4 and 8 KiB at H = 1024).
  static constexpr int64_t kPrefetch = 4096 / (kPanel * static_cast<int64_t>(sizeof(S)));
  // Scalars per 64-byte cache line, and lines per panel row (1 with AVX2, 2 with AVX-512).
  static constexpr int kLineScalars = 64 / static_cast<int>(sizeof(S));
  static constexpr int kLinesPerRow = (kPanel + kLineScalars - 1) / kLineScalars;
  static constexpr int64_t kDepthSlice = kSliceBytes / (kPanel * static_cast<int64_t>(sizeof(S)));

  // Packs B[k, col] = source[col * ld + k] (transposed = true: B is a row-major matrix's
  // transpose, e.g. W_hh^T from W_hh [G*H, H]) or source[k * ld + col] (transposed = false), for
  // k < depth and col < groups * group_width. The loops follow the source's rows so that its
  // reads are contiguous: packing runs on every call and must stay a small cost at N = 1.
  void pack(const S* source, int64_t ld, bool transposed, int64_t depth, int64_t groups,
            int64_t group_width) {
    borrowed_ = nullptr;
    depth_ = depth;
    groups_ = groups;
    group_width_ = group_width;
    chunks_ = (group_width + kPanel - 1) / kPanel;
    data_.resize(static_cast<std::size_t>(groups * chunks_ * depth * kPanel));
    // Threads share out the panels (each written by one thread: the same bits however many).
    const int64_t panels = groups * chunks_;
    const int threads = pack_threads(data_.size() * sizeof(S), panels);
    parallel_team(threads, [&](int thread, int team, StepBarrier&) {
      pack_panels(source, ld, transposed, panels * thread / team, panels * (thread + 1) / team);
    });
  }

 private:
  // Packs panels [begin, end) (panel p: group p / chunks_, chunk p % chunks_).
  void pack_panels(const S* source, int64_t ld, bool transposed, int64_t begin,
                   int64_t end) noexcept {
    const int64_t depth = depth_;
    for (int64_t p = begin; p < end; ++p) {
      const int64_t g = p / chunks_, c = p % chunks_;
      S* panel = panel_data(g, c);
      const int64_t width = chunk_width(c), col0 = g * group_width_ + c * kPanel;
      if (width < kPanel) std::fill(panel, panel + depth * kPanel, S(0));
      if (transposed) {
        // Square tiles of kPacket columns x kPacket depth rows are transposed in registers;
        // element by element this costs a quarter of an H = 256 LSTM's N = 1 inference call.
        using namespace Eigen::internal;
        int64_t j = 0;
        for (; j + kPacket <= width; j += kPacket) {
          const S* src = source + (col0 + j) * ld;
          int64_t k = 0;
          for (; k + kPacket <= depth; k += kPacket) {
            PacketBlock<Packet, kPacket> tile;
            for (int q = 0; q < kPacket; ++q) tile.packet[q] = ploadu<Packet>(src + q * ld + k);
            ptranspose(tile);
            for (int q = 0; q < kPacket; ++q) pstoreu(panel + (k + q) * kPanel + j, tile.packet[q]);
          }
          for (; k < depth; ++k) {
            for (int q = 0; q < kPacket; ++q) panel[k * kPanel + j + q] = src[q * ld + k];
          }
        }
        for (; j < width; ++j) {
          const S* src = source + (col0 + j) * ld;
          for (int64_t k = 0; k < depth; ++k) panel[k * kPanel + j] = src[k];
        }
      } else {
        for (int64_t k = 0; k < depth; ++k) {
          const S* src = source + k * ld + col0;
          std::copy(src, src + width, panel + k * kPanel);
        }
      }
    }
  }

 public:
  // Slots: the packets of a group, kPacket columns each (chunk c holds slots 2c and 2c + 1).
  // Columns [slot_begin(s), slot_begin(s) + kPacket) of every group, clipped to the group,
  // belong to slot s. Products and threads work on ranges of slots.
  int64_t slots() const noexcept { return slot_count(group_width_); }
  static int64_t slot_count(int64_t width) noexcept { return (width + kPacket - 1) / kPacket; }
  static int64_t slot_begin(int64_t s) noexcept { return s * kPacket; }
  int64_t scratch_size(int64_t rows) const noexcept { return rows * depth_; }
  // Elements held (zero before the first pack; zero for a view).
  std::size_t size() const noexcept { return data_.size(); }

  // The panels of `whole`, packed as one group of groups * group_width columns, seen as
  // `groups` groups of `group_width` (the gate layout a split by hidden units needs). Where
  // group_width is a multiple of kPanel the two layouts put the same columns in the same panels
  // in the same order and differ only in how slots map to columns, so no copy is needed; the
  // view borrows whole's storage and must not outlive it. Returns false (and stays as it was)
  // where the layouts differ: pack that layout instead.
  bool view_as_groups(const PackedPanels& whole, int64_t groups, int64_t group_width) noexcept {
    if (whole.groups_ != 1 || whole.group_width_ != groups * group_width ||
        group_width % kPanel != 0) {
      return false;
    }
    depth_ = whole.depth_;
    groups_ = groups;
    group_width_ = group_width;
    chunks_ = group_width / kPanel;
    data_.clear();
    borrowed_ = whole.panels();
    return true;
  }
  int64_t depth() const noexcept { return depth_; }

  // out[r, g * group_width + j] (+)= sum_k a[r * a_stride + k] * B[k, ...] for rows r < rows and
  // the columns of slots [slot_from, slot_to) of every group. `out` may not alias `a`.
  // `scratch` holds at least scratch_size(rows) elements, private to the calling thread.
  // `backwards` walks the panels last to first: the same arithmetic for every output (the same
  // bits), but a time loop that alternates the direction from step to step starts each step on
  // the panels the last one read most recently, which are still in L1 (or L2) rather than L2
  // (or L3).
  void multiply(const S* a, int64_t a_stride, int64_t rows, S* out, int64_t out_stride,
                bool accumulate, int64_t slot_from, int64_t slot_to, S* scratch,
                bool backwards = false) const noexcept {
    multiply(RowsOf<S>{a, a_stride}, rows, out, out_stride, accumulate, slot_from, slot_to, scratch,
             backwards);
  }
  // The same with row r of `a` at a.row(r): the same bits as on a copy of those rows.
  void multiply(const RowsOf<S>& a, int64_t rows, S* out, int64_t out_stride, bool accumulate,
                int64_t slot_from, int64_t slot_to, S* scratch,
                bool backwards = false) const noexcept {
    if (rows < kMinBlockRows) {
      switch (rows) {
        case 1: return few_rows<1>(a, out, out_stride, accumulate, slot_from, slot_to, backwards);
        case 2: return few_rows<2>(a, out, out_stride, accumulate, slot_from, slot_to, backwards);
        case 3: return few_rows<3>(a, out, out_stride, accumulate, slot_from, slot_to, backwards);
        default: return;
      }
    }
    // The rows are copied k-major per row block, so a micro-kernel reads its broadcasts from one
    // contiguous stream: rows of a that are 4 KiB apart (H = 1024 in float) would otherwise all
    // fall into the same L1 sets and evict each other. The blocks are as even as possible (10
    // rows: 5 + 5, not 8 + 2) so that none is left with too few accumulators.
    const int64_t blocks = (rows + kRows - 1) / kRows;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t r0 = block_start(rows, blocks, b);
      const int64_t block_rows = block_start(rows, blocks, b + 1) - r0;
      copy_block(a.from(r0), static_cast<int>(block_rows), scratch + r0 * depth_);
    }
    each_panel(slot_from, slot_to, backwards, [&](int64_t g, int64_t c, const Piece& piece) {
      S* o = out + g * group_width_ + slot_begin(piece.slot);
      // The depth is cut into slices (kDepthSlice); every row block reads the slice's panel
      // part, the first from L2 or L3, the others from L1 (16 KiB slices) or L2 (64 KiB).
      for (int64_t k0 = 0; k0 < depth_; k0 += kDepthSlice) {
        const int64_t k1 = std::min<int64_t>(depth_, k0 + kDepthSlice);
        const S* panel = panel_data(g, c) + k0 * kPanel + piece.offset;
        const bool acc = accumulate || k0 > 0;
        for (int64_t b = 0; b < blocks; ++b) {
          const int64_t r = block_start(rows, blocks, b);
          const int block_rows = static_cast<int>(block_start(rows, blocks, b + 1) - r);
          const S* rows_k = scratch + r * depth_ + k0 * block_rows;
          if (piece.packets == 2) {
            sized_block<kRows, 2>(block_rows, rows_k, panel, k1 - k0, o + r * out_stride,
                                  out_stride, piece.width, acc);
          } else {
            sized_block<kRows, 1>(block_rows, rows_k, panel, k1 - k0, o + r * out_stride,
                                  out_stride, piece.width, acc);
          }
        }
      }
    });
  }

 private:
  // The part of chunk c inside slots [slot_from, slot_to): its first slot, its offset in the
  // panel, its packets (1 or 2) and columns.
  struct Piece {
    int64_t slot, offset;
    int packets, width;
  };
  Piece piece_of(int64_t c, int64_t slot_from, int64_t slot_to) const noexcept {
    const int64_t first = std::max(slot_from, 2 * c);
    const int64_t last = std::min({slot_to, 2 * c + 2, slots()});
    const int64_t width = std::min<int64_t>((last - first) * kPacket, group_width_ - slot_begin(first));
    return {first, (first - 2 * c) * kPacket, static_cast<int>(last - first), static_cast<int>(width)};
  }
  // f(g, c, piece) for every group g's panel of every chunk c with a part in slots
  // [slot_from, slot_to): chunk by chunk, the groups of a chunk in turn; `backwards`, the same
  // panels last to first (multiply's `backwards`).
  template <typename F>
  void each_panel(int64_t slot_from, int64_t slot_to, bool backwards, F&& f) const {
    const int64_t first = slot_from / 2, chunks = (slot_to + 1) / 2 - first;
    for (int64_t i = 0; i < chunks; ++i) {
      const int64_t c = backwards ? first + chunks - 1 - i : first + i;
      const Piece piece = piece_of(c, slot_from, slot_to);
      for (int64_t j = 0; j < groups_; ++j) f(backwards ? groups_ - 1 - j : j, c, piece);
    }
  }

  int64_t chunk_width(int64_t c) const noexcept {
    return std::min<int64_t>(kPanel, group_width_ - c * kPanel);
  }
  const S* panels() const noexcept { return borrowed_ != nullptr ? borrowed_ : data_.data(); }
  const S* panel_data(int64_t g, int64_t c) const noexcept {
    return panels() + (g * chunks_ + c) * depth_ * kPanel;
  }
  S* panel_data(int64_t g, int64_t c) noexcept {
    return data_.data() + (g * chunks_ + c) * depth_ * kPanel;
  }

  // Stores NP packets (NP * kPacket columns, of which the first `width` are real) to o.
  template <int NP>
  static void store(const Packet* acc, S* o, int width, bool accumulate) noexcept {
    using namespace Eigen::internal;
    if (width == NP * kPacket) {
      for (int q = 0; q < NP; ++q) {
        pstoreu(o + q * kPacket, accumulate ? padd(ploadu<Packet>(o + q * kPacket), acc[q]) : acc[q]);
      }
      return;
    }
    EIGEN_ALIGN_MAX S tmp[NP * kPacket];
    for (int q = 0; q < NP; ++q) pstoreu(tmp + q * kPacket, acc[q]);
    for (int j = 0; j < width; ++j) o[j] = accumulate ? o[j] + tmp[j] : tmp[j];
  }

  // First row of block b when `rows` are cut into `blocks` blocks differing by at most one row.
  static int64_t block_start(int64_t rows, int64_t blocks, int64_t b) noexcept {
    return rows / blocks * b + std::min(b, rows % blocks);
  }

  // `rows` (<= kRows) rows of a, depth_ deep, copied k-major:
  // dst[k * rows + r]. Square tiles of a packet with at least kRows lanes (AVX-512: a half
  // packet of 8 floats; AVX2: the 8-float packet for kRows = 6) are transposed in registers, the
  // rows missing from the tile taken as zeros, and each of the tile's columns is stored whole:
  // the next store overwrites its lanes past `rows`. Element by element this copy was 12% of an
  // RNN 160x128x20 training step; on AVX2, where no packet held exactly kRows lanes, it stayed
  // element by element and took ~15% of the BPTT product of an LSTM 64x8x200 (rows: N = 8, in
  // two blocks of 4, depth 4H).
  void copy_block(const RowsOf<S>& a, int rows, S* dst) const noexcept {
    using namespace Eigen::internal;
    const S* row[kRows];
    for (int r = 0; r < rows; ++r) row[r] = a.row(r);
    using Half = typename unpacket_traits<Packet>::half;
    using RowPacket = std::conditional_t<(unpacket_traits<Half>::size >= kRows), Half, Packet>;
    constexpr int kLanes = unpacket_traits<RowPacket>::size;
    int64_t k = 0;
    if (kLanes > 1 && rows <= kLanes) {
      // The last tile's stores reach (k + kLanes - 1) * rows + kLanes: kept inside the block.
      for (; k + kLanes <= depth_ && (k + kLanes - 1) * rows + kLanes <= depth_ * rows; k += kLanes) {
        PacketBlock<RowPacket, kLanes> tile;
        for (int r = 0; r < kLanes; ++r) {
          tile.packet[r] = r < rows ? ploadu<RowPacket>(row[r] + k) : pset1<RowPacket>(S(0));
        }
        ptranspose(tile);
        for (int q = 0; q < kLanes; ++q) pstoreu(dst + (k + q) * rows, tile.packet[q]);
      }
    }
    for (; k < depth_; ++k) {
      for (int r = 0; r < rows; ++r) dst[k * rows + r] = row[r][k];
    }
  }

  // block<rows, NP> for a run-time rows in 1..R.
  template <int R, int NP>
  static void sized_block(int rows, const S* a, const S* panel, int64_t depth, S* o,
                          int64_t out_stride, int width, bool accumulate) noexcept {
    if (rows == R) {
      block<R, NP>(a, panel, depth, o, out_stride, width, accumulate);
    } else if constexpr (R > 1) {
      sized_block<R - 1, NP>(rows, a, panel, depth, o, out_stride, width, accumulate);
    }
  }

  // R rows (a: packed k-major, a[k * R + r]) against NP packets of a panel (row stride kPanel).
  template <int R, int NP>
  static void block(const S* a, const S* panel, int64_t depth, S* o, int64_t out_stride,
                    int width, bool accumulate) noexcept {
    using namespace Eigen::internal;
    Packet acc[R][NP];
    for (int r = 0; r < R; ++r) {
      for (int q = 0; q < NP; ++q) acc[r][q] = pset1<Packet>(S(0));
    }
    // The output tile is usually cold and its rows are a gate row apart, a stride the hardware
    // prefetcher does not follow: fetched now, it arrives while the depth loop runs. Accumulated
    // into (the time loop's product: the hoisted input projection wrote the tile a whole sequence
    // earlier), 7% of an H = 256 LSTM's forward stalled on these loads without it; overwritten
    // (the input projection of all T*N rows, whose output is larger than the caches), each store
    // still waits for its line, and prefetching it too made that product 1.07-1.16x faster at
    // 3200-6400 rows (H = 64-256; paired in one process on the Zen 4: bench/README.md,
    // "Prefetching the whole panel row").
    for (int r = 0; r < R; ++r) {
      __builtin_prefetch(o + r * out_stride);
      __builtin_prefetch(o + r * out_stride + NP * kPacket - 1);
    }
    for (int64_t k = 0; k < depth; ++k) {
      // Large weights stream from L3 once per step; the hardware prefetcher alone leaves the
      // micro-kernel waiting on them (measured: H = 1024 LSTM at 60% of the L2-resident rate).
      // Every cache line of the panel row: with AVX-512 a row is two lines, and with only the
      // first prefetched, products over weights of 4-16 MB took 1.04-1.07x this time at 400 rows
      // and 1.03-1.4x at 16 (paired in one process on the Zen 4; an LSTM 1024x8x25 inference
      // 1.5x: bench/README.md, "Prefetching the whole panel row").
      for (int line = 0; line < kLinesPerRow; ++line) {
        __builtin_prefetch(panel + (k + kPrefetch) * kPanel + line * kLineScalars);
      }
      Packet w[NP];
      for (int q = 0; q < NP; ++q) w[q] = ploadu<Packet>(panel + k * kPanel + q * kPacket);
      for (int r = 0; r < R; ++r) {
        const Packet x = pset1<Packet>(a[k * R + r]);
        for (int q = 0; q < NP; ++q) acc[r][q] = pmadd(x, w[q], acc[r][q]);
      }
    }
    for (int r = 0; r < R; ++r) store<NP>(acc[r], o + r * out_stride, width, accumulate);
  }

  // R (< kMinBlockRows) rows against P panels at once, straight from `a`: each panel packet
  // loaded feeds R FMAs, and the 2 * R * P accumulators hide the FMA latency, which one panel's
  // 2 * R do not (3 rows ran at the speed of 4; 2 rows, walked one after the other, read the
  // weights twice and took twice the time of 1). Pieces of one packet (a group's last slot,
  // or a thread's share starting or ending mid-chunk) go through the same kernel with NP = 1.
  template <int R>
  void few_rows(const RowsOf<S>& rows_of_a, S* out, int64_t out_stride, bool accumulate,
                int64_t slot_from, int64_t slot_to, bool backwards) const noexcept {
    constexpr int P = kFewRowPanels[R];
    const S* a[R];
    for (int r = 0; r < R; ++r) a[r] = rows_of_a.row(r);
    PanelRefs<P> full, half;
    each_panel(slot_from, slot_to, backwards, [&](int64_t g, int64_t c, const Piece& piece) {
      PanelRefs<P>& refs = piece.packets == 2 ? full : half;
      refs.add(panel_data(g, c) + piece.offset, out + g * group_width_ + slot_begin(piece.slot),
               piece.width);
      if (refs.n == P) {
        if (piece.packets == 2) {
          panel_group<R, P, 2>(a, refs, out_stride, accumulate);
        } else {
          panel_group<R, P, 1>(a, refs, out_stride, accumulate);
        }
        refs.n = 0;
      }
    });
    if (full.n > 0) partial_group<R, P - 1, 2>(full.n, a, full, out_stride, accumulate);
    if (half.n > 0) partial_group<R, P - 1, 1>(half.n, a, half, out_stride, accumulate);
  }

  template <int P>
  struct PanelRefs {
    const S* panels[P];
    S* outs[P];
    int widths[P];
    int n = 0;
    void add(const S* panel, S* o, int width) noexcept {
      panels[n] = panel;
      outs[n] = o;
      widths[n] = width;
      ++n;
    }
  };

  // panel_group<R, n, NP> for a run-time n in 1..P.
  template <int R, int P, int NP, typename Refs>
  void partial_group(int n, const S* const* a, const Refs& refs, int64_t out_stride,
                     bool accumulate) const noexcept {
    if (n == P) {
      panel_group<R, P, NP>(a, refs, out_stride, accumulate);
    } else if constexpr (P > 1) {
      partial_group<R, P - 1, NP>(n, a, refs, out_stride, accumulate);
    }
  }

  // R rows (row r at a[r]) against the first P panels of refs, NP packets of each. The depth is summed in
  // the row-block path's slices (each slice's sum added to the output), so that an output comes
  // out the same bit for bit whether its row went through this kernel or a row block: a time
  // loop split by sequences gives each thread fewer rows than one thread would have.
  template <int R, int P, int NP, typename Refs>
  void panel_group(const S* const* a, const Refs& refs, int64_t out_stride,
                   bool accumulate) const noexcept {
    using namespace Eigen::internal;
    for (int64_t k0 = 0; k0 < depth_; k0 += kDepthSlice) {
      const int64_t k1 = std::min<int64_t>(depth_, k0 + kDepthSlice);
      Packet acc[R][P][NP];
      for (int r = 0; r < R; ++r) {
        for (int p = 0; p < P; ++p) {
          for (int q = 0; q < NP; ++q) acc[r][p][q] = pset1<Packet>(S(0));
        }
      }
      for (int64_t k = k0; k < k1; ++k) {
        Packet x[R];
        for (int r = 0; r < R; ++r) x[r] = pset1<Packet>(a[r][k]);
        for (int p = 0; p < P; ++p) {
          for (int q = 0; q < NP; ++q) {
            Packet w = ploadu<Packet>(refs.panels[p] + k * kPanel + q * kPacket);
            // One load per packet for all R rows (register_hint.h): on a 2-vCPU Xeon (Emerald
            // Rapids) VM, 2 rows took 1.6x the time of 1 and 3 rows 2.1x with a load per row,
            // 1.1x and 1.3x with one (H = 256 LSTM step product, 2 rows 12.8 -> 8.5 us, 3 rows
            // 16.3 -> 9.9 us).
            if constexpr (R > 1) detail::keep_in_register(w);
            for (int r = 0; r < R; ++r) acc[r][p][q] = pmadd(x[r], w, acc[r][p][q]);
          }
        }
      }
      const bool add = accumulate || k0 > 0;
      for (int r = 0; r < R; ++r) {
        for (int p = 0; p < P; ++p) {
          store<NP>(acc[r][p], refs.outs[p] + r * out_stride, refs.widths[p], add);
        }
      }
    }
  }

  int64_t depth_ = 0, groups_ = 0, group_width_ = 0, chunks_ = 0;
  Buffer<S> data_;
  const S* borrowed_ = nullptr;  // a view's panels (view_as_groups); data_ is then empty
};

}  // namespace detail
}  // namespace rnncore

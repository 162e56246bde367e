// CPU sparse optimizer: one pass over the rows in order, the inner loop over dim calling the
// TS_HD step of optimizer_math.h. Compiled with -fno-math-errno (kernels/CMakeLists.txt) so
// sqrtf has no errno branch and the Adagrad, Adam and FTRL loops vectorise.
#include <algorithm>
#include <cstdint>
#include <string>

#include "kernels/cpu_simd.h"
#include "kernels/finite.h"
#include "kernels/optimizer_math.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::kernels {
namespace {

// Each row update returns the OR of NonFiniteFlag over every weight it wrote (kernels/finite.h):
// the finite check, done while the values are in registers, one OR reduction the vectoriser
// keeps in a register beside the loop. A plain loop over dim, which -O3 turns into full-width
// SIMD code with vector epilogues: unrolled into blocks of 8 with the flags kept in 8 lanes, g++
// spilled the lanes to a realigned stack slot and the check cost 4-5 ns on every row, 70 % of
// an Adagrad update of MF's 33 floats (cached rows; now 20 %). The caller ORs the rows' flags and
// looks for the first bad row only when they saw a non-finite value (ApplyRows).

struct SgdUpdate {
  SgdParams params;
  uint32_t operator()(float* __restrict__ w, const float* __restrict__ g, int dim) const {
    uint32_t flags = 0;
    for (int j = 0; j < dim; ++j) {
      const float nw = SgdStep(w[j], g[j], params);
      w[j] = nw;
      flags |= NonFiniteFlag(nw);
    }
    return flags;
  }
};

// acc is the state half of the same row; restrict holds because the two ranges do not overlap.
// Kept out of line: inlined into the row loop, g++ sees w and acc derive from one pointer,
// loses the restrict guarantee and leaves the loop scalar.
[[gnu::noinline, TS_WIDE_SIMD]] uint32_t AdagradRow(float* __restrict__ w, float* __restrict__ acc,
                                                    const float* __restrict__ g, int dim,
                                                    AdagradParams params) {
  uint32_t flags = 0;
  for (int j = 0; j < dim; ++j) {
    const float nw = AdagradStep(w[j], g[j], &acc[j], params);
    w[j] = nw;
    flags |= NonFiniteFlag(nw);
  }
  return flags;
}

struct AdagradUpdate {
  AdagradParams params;
  uint32_t operator()(float* w, const float* g, int dim) const {
    return AdagradRow(w, w + dim, g, dim, params);
  }
};

// Row-wise Adagrad on one row: its mean square and scale once, then one multiply-add per weight.
[[gnu::noinline, TS_WIDE_SIMD]] uint32_t RowwiseAdagradRow(float* __restrict__ w,
                                                           float* __restrict__ acc,
                                                           const float* __restrict__ g, int dim,
                                                           AdagradParams params) {
  const float scale = RowwiseAdagradScale(RowwiseMeanSquare(g, dim), acc, params);
  uint32_t flags = 0;
  for (int j = 0; j < dim; ++j) {
    const float nw = RowwiseAdagradStep(w[j], g[j], scale);
    w[j] = nw;
    flags |= NonFiniteFlag(nw);
  }
  return flags;
}

struct RowwiseAdagradUpdate {
  AdagradParams params;
  uint32_t operator()(float* w, const float* g, int dim) const {
    return RowwiseAdagradRow(w, w + dim, g, dim, params);
  }
};

// Lazy Adam on one row: the row's step advances by one and its step size (the bias
// corrections) is computed once; the element loop is Adagrad's shape with two state arrays.
[[gnu::noinline, TS_WIDE_SIMD]] uint32_t AdamRow(float* __restrict__ w, float* __restrict__ m,
                                                 float* __restrict__ v, const float* __restrict__ g,
                                                 int dim, float step_size, AdamParams params) {
  uint32_t flags = 0;
  for (int j = 0; j < dim; ++j) {
    const float nw = AdamStep(w[j], g[j], &m[j], &v[j], step_size, params);
    w[j] = nw;
    flags |= NonFiniteFlag(nw);
  }
  return flags;
}

struct AdamUpdate {
  AdamParams params;
  uint32_t operator()(float* w, const float* g, int dim) const {
    float* step = w + 3 * dim;
    const float t = *step + 1.0f;
    *step = t;
    return AdamRow(w, w + dim, w + 2 * dim, g, dim, AdamStepSize(t, params), params);
  }
};

[[gnu::noinline]] uint32_t FtrlRow(float* __restrict__ w, float* __restrict__ z,
                                   float* __restrict__ n, const float* __restrict__ g, int dim,
                                   FtrlParams params) {
  uint32_t flags = 0;
  for (int j = 0; j < dim; ++j) {
    const float nw = FtrlStep(w[j], g[j], &z[j], &n[j], params);
    w[j] = nw;
    flags |= NonFiniteFlag(nw);
  }
  return flags;
}

struct FtrlUpdate {
  FtrlParams params;
  uint32_t operator()(float* w, const float* g, int dim) const {
    return FtrlRow(w, w + dim, w + 2 * dim, g, dim, params);
  }
};

template <typename Update>
void ApplyRows(const Update& update, float* const* rows, const float* grads, int64_t num_rows,
               int dim, int row_floats, int lane, int lanes, int64_t* first_bad) {
  // Rows are scattered over the table: fetch the weights and state of a row some updates
  // ahead, or nearly every update starts with a cache miss on its accumulator. 32 rows ahead
  // rather than 8: on the AMD EPYC machines, tessera_bench kernels ran Adagrad 30-50 % faster
  // at dims 32 and 128 (16-64 were alike), and in-process MF at dim 128 gained ~15 %.
  constexpr int64_t kAhead = 32;
  const int row_lines = (row_floats * 4 + 63) / 64;
  uint32_t flags = 0;
  auto in_lane = [&](int64_t i) { return lanes == 1 || RowLane(rows[i], lanes) == lane; };
  if (lanes == 1) {
    for (int64_t i = 0; i < num_rows; ++i) {
      if (i + kAhead < num_rows) {
        const char* ahead = reinterpret_cast<const char*>(rows[i + kAhead]);
        for (int l = 0; l < row_lines; ++l) __builtin_prefetch(ahead + 64 * l, 1);
      }
      flags |= update(rows[i], grads + i * dim, dim);
    }
  } else {
    // Each row's lane is worked out once, kAhead rows early (for its prefetch), and kept here
    // until the row's turn: mine[i % kAhead] is row i's.
    bool mine[kAhead];
    for (int64_t i = 0; i < std::min(kAhead, num_rows); ++i) mine[i] = in_lane(i);
    for (int64_t i = 0; i < num_rows; ++i) {
      const bool own = mine[i % kAhead];
      if (i + kAhead < num_rows) {
        mine[i % kAhead] = in_lane(i + kAhead);
        if (mine[i % kAhead]) {
          const char* ahead = reinterpret_cast<const char*>(rows[i + kAhead]);
          for (int l = 0; l < row_lines; ++l) __builtin_prefetch(ahead + 64 * l, 1);
        }
      }
      if (own) flags |= update(rows[i], grads + i * dim, dim);
    }
  }
  // The finite check: the first row (of this lane) whose weights are not finite after the call.
  // Rows were finite before it (the servers write no other), so that is the first row whose
  // update wrote a NaN or infinity (a repeated row: its first occurrence).
  if (first_bad == nullptr) return;
  *first_bad = num_rows;
  if (FlagsFinite(flags)) return;
  for (int64_t i = 0; i < num_rows; ++i) {
    if (in_lane(i) && FindNonFinite(rows[i], dim) < dim) {
      *first_bad = i;
      return;
    }
  }
}

}  // namespace

int RowLane(const float* row, int lanes) {
  // Rows are 64-byte aligned and at least that long: mix the line number so that rows of any
  // stride spread evenly over the lanes.
  const uint64_t line = reinterpret_cast<uintptr_t>(row) >> 6;
  return static_cast<int>(((line * 0x9E3779B97F4A7C15ull) >> 32) % static_cast<uint64_t>(lanes));
}

Status ApplySparseUpdateCpu(const OptimizerParams& p, float* const* rows, const float* grads,
                            int64_t num_rows, int dim, int64_t* first_non_finite) {
  return ApplySparseUpdateCpuLane(p, rows, grads, num_rows, dim, 0, 1, first_non_finite);
}

Status ApplySparseUpdateCpuLane(const OptimizerParams& p, float* const* rows, const float* grads,
                                int64_t num_rows, int dim, int lane, int lanes,
                                int64_t* first_non_finite) {
  if (lanes < 1 || lane < 0 || lane >= lanes) {
    return Status::InvalidArgument("ApplySparseUpdate: lane " + std::to_string(lane) + " of " +
                                   std::to_string(lanes));
  }
  TS_RETURN_IF_ERROR(internal::ValidateSparseUpdateArgs(p, rows, grads, num_rows, dim));
  // Checked before any row changes so that an error leaves the table untouched.
  for (int64_t i = 0; i < num_rows; ++i) {
    if (rows[i] == nullptr) {
      return Status::InvalidArgument("ApplySparseUpdate: rows[" + std::to_string(i) + "] is null");
    }
  }
  const int row_floats = dim + OptimizerStateFloats(p.kind, dim);
  switch (p.kind) {
    case OptimizerKind::kSgd:
      ApplyRows(SgdUpdate{SgdParams{p.lr}}, rows, grads, num_rows, dim, row_floats, lane, lanes,
                first_non_finite);
      break;
    case OptimizerKind::kAdagrad:
      ApplyRows(AdagradUpdate{AdagradParams{p.lr, p.eps}}, rows, grads, num_rows, dim, row_floats,
                lane, lanes, first_non_finite);
      break;
    case OptimizerKind::kAdam:
      ApplyRows(AdamUpdate{AdamParams{p.lr, p.beta1, p.beta2, p.eps}}, rows, grads, num_rows, dim,
                row_floats, lane, lanes, first_non_finite);
      break;
    case OptimizerKind::kFtrl:
      ApplyRows(FtrlUpdate{FtrlParams{p.lr, p.ftrl_beta, p.l1, p.l2}}, rows, grads, num_rows, dim,
                row_floats, lane, lanes, first_non_finite);
      break;
    case OptimizerKind::kRowwiseAdagrad:
      ApplyRows(RowwiseAdagradUpdate{AdagradParams{p.lr, p.eps}}, rows, grads, num_rows, dim,
                row_floats, lane, lanes, first_non_finite);
      break;
  }
  return OkStatus();
}

}  // namespace tessera::kernels

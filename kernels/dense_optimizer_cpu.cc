// CPU dense optimizer: one pass over the vector, cut in pieces of multiples of 16 elements over the
// calling thread's OpenMP team, the inner loop calling the TS_HD step of optimizer_math.h. Same
// shape and flags as sparse_optimizer_cpu.cc (8-element blocks, restrict pointers, -fno-math-errno)
// so the loops vectorise; vectorising across elements does not change any element's arithmetic, so
// the result is the scalar loop's.
#include "kernels/cpu_parallel.h"
#include "kernels/dense_optimizer.h"
#include "kernels/optimizer_math.h"

namespace tessera::kernels {
namespace {

constexpr int64_t kBlock = 8;

// Out of line for the same reason as AdagradRow in sparse_optimizer_cpu.cc: inlined, g++ sees
// the state pointers derive from one vector, drops the restrict guarantee and stays scalar.
[[gnu::noinline]] void SgdLoop(float* __restrict__ w, const float* __restrict__ g, int64_t count,
                               SgdParams p) {
  int64_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    for (int64_t k = 0; k < kBlock; ++k) w[i + k] = SgdStep(w[i + k], g[i + k], p);
  }
  for (; i < count; ++i) w[i] = SgdStep(w[i], g[i], p);
}

[[gnu::noinline]] void AdagradLoop(float* __restrict__ w, float* __restrict__ acc,
                                   const float* __restrict__ g, int64_t count, AdagradParams p) {
  int64_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    for (int64_t k = 0; k < kBlock; ++k) w[i + k] = AdagradStep(w[i + k], g[i + k], &acc[i + k], p);
  }
  for (; i < count; ++i) w[i] = AdagradStep(w[i], g[i], &acc[i], p);
}

[[gnu::noinline]] void AdamLoop(float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                                const float* __restrict__ g, int64_t count, float step_size,
                                AdamParams p) {
  int64_t i = 0;
  for (; i + kBlock <= count; i += kBlock) {
    for (int64_t k = 0; k < kBlock; ++k) {
      w[i + k] = AdamStep(w[i + k], g[i + k], &m[i + k], &v[i + k], step_size, p);
    }
  }
  for (; i < count; ++i) w[i] = AdamStep(w[i], g[i], &m[i], &v[i], step_size, p);
}

}  // namespace

Status ApplyDenseUpdateCpu(const OptimizerParams& p, float* params, const float* grads,
                           int64_t count, DenseOptimizerState* state) {
  TS_RETURN_IF_ERROR(internal::ValidateDenseUpdateArgs(p, params, grads, count, state));
  return ApplyDenseUpdateCpu(p, params, grads, count, state->slots.data(), &state->step);
}

Status ApplyDenseUpdateCpu(const OptimizerParams& p, float* params, const float* grads,
                           int64_t count, float* slots, int64_t* step) {
  TS_RETURN_IF_ERROR(internal::ValidateDenseSlotsArgs(p, params, grads, count, slots, step));
  // Cut over the calling thread's OpenMP team (kernels/cpu_parallel.h) in blocks of 16: every
  // element's step is its own, so the cut changes no bit.
  switch (p.kind) {
    case OptimizerKind::kSgd:
      CpuParallelFor(count, kParallelGrainFloats, 16, [&](int64_t begin, int64_t end) {
        SgdLoop(params + begin, grads + begin, end - begin, SgdParams{p.lr});
      });
      break;
    case OptimizerKind::kAdagrad:
      CpuParallelFor(count, kParallelGrainFloats, 16, [&](int64_t begin, int64_t end) {
        AdagradLoop(params + begin, slots + begin, grads + begin, end - begin,
                    AdagradParams{p.lr, p.eps});
      });
      break;
    case OptimizerKind::kAdam: {
      // The step is counted even for count == 0, so every replica's counter moves together.
      const AdamParams adam{p.lr, p.beta1, p.beta2, p.eps};
      const float step_size = AdamStepSize(static_cast<float>(*step + 1), adam);
      CpuParallelFor(count, kParallelGrainFloats, 16, [&](int64_t begin, int64_t end) {
        AdamLoop(params + begin, slots + begin, slots + count + begin, grads + begin, end - begin,
                 step_size, adam);
      });
      ++*step;
      break;
    }
    case OptimizerKind::kFtrl:  // row optimizers: rejected by ValidateDenseSlotsArgs
    case OptimizerKind::kRowwiseAdagrad:
      break;
  }
  return OkStatus();
}

}  // namespace tessera::kernels

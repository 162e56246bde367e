// tessera_bench gpu: the entry point, in every build. The measurements live in gpu_bench_cuda.cu
// (compiled only with CUDA); without a usable device this says why in one line and succeeds, so
// a script can run the benchmark anywhere.
#include <cstdio>

#include "bench/benches.h"
#include "kernels/device.h"

namespace tessera::bench {

bool RunGpuBench(const GpuBenchOptions& o, JsonLines* json) {
  const Status available = kernels::CheckCudaAvailable();
  if (!available.ok()) {
    std::printf("\n== GPU: nothing measured: %s\n", available.message().c_str());
    json->Write("gpu_skipped", {});
    return true;
  }
#if TESSERA_WITH_CUDA
  return internal::RunGpuBenchOnDevice(o, json);
#else
  (void)o;
  return true;  // unreachable: CheckCudaAvailable fails without CUDA
#endif
}

}  // namespace tessera::bench

#include "kernels/device_resources.h"

#include <string>
#include <system_error>

#include "core/fork_join.h"
#include "kernels/gemm_cpu.h"

namespace tessera::kernels {

StatusOr<std::unique_ptr<DeviceResources>> DeviceResources::Create(const DeviceOptions& options) {
  std::unique_ptr<DeviceResources> resources(new DeviceResources());
  resources->context_.device = options.device;
  resources->context_.deterministic = options.deterministic;
  switch (options.device) {
    case Device::kCpu:
      if (options.cpu_threads < 1 || options.cpu_threads > 2) {
        return Status::InvalidArgument("DeviceResources: cpu_threads must be 1 or 2, got " +
                                       std::to_string(options.cpu_threads));
      }
      if (options.cpu_threads == 2) {
        // std::thread throws when the process may not start another thread (a memory or
        // process limit): a Status here, as everything else that can happen.
        try {
          resources->helper_ = std::make_unique<TwoWayFork>();
        } catch (const std::system_error& e) {
          return Status::FailedPrecondition(
              std::string("cannot start a thread for the compute helper (") + e.what() +
              "): the process is at its thread or memory limit (ulimit -u, ulimit -v)");
        }
        resources->context_.helper = resources->helper_.get();
      }
      resources->context_.scratch = &resources->scratch_;
      if (options.gemm_threads < 0) {
        return Status::InvalidArgument("DeviceResources: gemm_threads must be >= 0, got " +
                                       std::to_string(options.gemm_threads));
      }
      TS_RETURN_IF_ERROR(CheckGemmChoice());
      if (options.gemm_threads > 0) SetGemmThreads(options.gemm_threads);
      return resources;
    case Device::kCuda:
      TS_RETURN_IF_ERROR(CheckCudaAvailable());
#if TESSERA_WITH_CUDA
      // The stream belongs to the device current when it is made.
      TS_RETURN_IF_ERROR(internal::SetCudaDevice(options.cuda_device));
      TS_ASSIGN_OR_RETURN(resources->stream_, internal::CreateCudaStream());
      resources->context_.stream = resources->stream_;
      TS_ASSIGN_OR_RETURN(resources->cublas_,
                          internal::CreateCublasHandle(resources->stream_, options.allow_tf32));
      resources->context_.cublas = resources->cublas_;
#endif
      return resources;
  }
  return Status::InvalidArgument("DeviceResources: unknown device " +
                                 std::to_string(static_cast<int>(options.device)));
}

DeviceResources::~DeviceResources() {
#if TESSERA_WITH_CUDA
  // The handle first: it may hold work queued on the stream, which DestroyCudaStream waits for.
  if (cublas_ != nullptr) internal::DestroyCublasHandle(cublas_);
  if (stream_ != nullptr) internal::DestroyCudaStream(stream_);
#endif
}

}  // namespace tessera::kernels

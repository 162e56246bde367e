// DeviceSegments: the device copy of a host SegmentPlan, in grow-only buffers.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/cuda_util.cuh"
#include "kernels/segments.h"

namespace tessera::kernels {

DeviceSegments::~DeviceSegments() {
  (void)cudaFree(offsets_);
  (void)cudaFree(order_);
}

Status DeviceSegments::Reserve(void** buffer, size_t* capacity, size_t bytes, const char* what) {
  if (bytes <= *capacity) return OkStatus();
  // Over-allocate by half so that a slowly growing batch reallocates O(log) times. cudaFree
  // waits for the device, so no queued copy still reads the old buffer.
  const size_t target = std::max(bytes, *capacity + *capacity / 2);
  TS_RETURN_IF_ERROR(
      cuda::CudaStatus(cudaFree(*buffer), std::string("DeviceSegments: free ") + what));
  *buffer = nullptr;
  *capacity = 0;
  TS_RETURN_IF_ERROR(cuda::CudaStatus(
      cudaMalloc(buffer, target),
      "DeviceSegments: allocate " + std::to_string(target) + " bytes for " + what));
  *capacity = target;
  return OkStatus();
}

Status DeviceSegments::Upload(const SegmentPlan& plan, cudaStream_t stream) {
  view_ = SegmentsView();
  const size_t offsets_bytes = static_cast<size_t>(plan.num_rows() + 1) * sizeof(int32_t);
  const size_t order_bytes = static_cast<size_t>(plan.num_positions()) * sizeof(int32_t);
  TS_RETURN_IF_ERROR(Reserve(&offsets_, &offsets_capacity_, offsets_bytes, "offsets"));
  TS_RETURN_IF_ERROR(Reserve(&order_, &order_capacity_, order_bytes, "order"));
  TS_RETURN_IF_ERROR(cuda::CudaStatus(
      cudaMemcpyAsync(offsets_, plan.offsets(), offsets_bytes, cudaMemcpyHostToDevice, stream),
      "DeviceSegments: copy offsets host->device"));
  if (order_bytes > 0) {
    TS_RETURN_IF_ERROR(cuda::CudaStatus(
        cudaMemcpyAsync(order_, plan.order(), order_bytes, cudaMemcpyHostToDevice, stream),
        "DeviceSegments: copy order host->device"));
  }
  view_.num_rows = plan.num_rows();
  view_.num_positions = plan.num_positions();
  view_.offsets = static_cast<const int32_t*>(offsets_);
  view_.order = static_cast<const int32_t*>(order_);
  return OkStatus();
}

SegmentsView DeviceSegments::view() const { return view_; }

}  // namespace tessera::kernels

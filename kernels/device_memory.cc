#include "kernels/device_memory.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

namespace tessera::kernels {
namespace {

constexpr std::align_val_t kHostAlignment{64};

size_t Grown(size_t capacity, size_t bytes) { return std::max(bytes, capacity + capacity / 2); }

Status HostAllocate(size_t bytes, const char* name, void** out) {
  *out = ::operator new(bytes, kHostAlignment, std::nothrow);
  if (*out != nullptr) return OkStatus();
  return Status::FailedPrecondition(std::string(name) + " does not fit: allocate " +
                                    std::to_string(bytes) + " bytes of host memory: out of memory");
}

void HostRelease(void* memory) {
  if (memory != nullptr) ::operator delete(memory, kHostAlignment);
}

// Allocates `bytes` of `device` memory (pinned host memory for kCuda when pinned_host).
Status Allocate(Device device, bool pinned_host, size_t bytes, const char* name, void** out) {
  if (device == Device::kCpu) return HostAllocate(bytes, name, out);
#if TESSERA_WITH_CUDA
  if (device == Device::kCuda) return internal::CudaAllocate(bytes, pinned_host, name, out);
#else
  (void)pinned_host;
#endif
  return Status::FailedPrecondition(std::string("allocate ") + name + " on device " +
                                    DeviceName(device) + ": built without CUDA");
}

void Release(Device device, bool pinned_host, void* memory) {
  if (memory == nullptr) return;
  if (device == Device::kCpu) return HostRelease(memory);
#if TESSERA_WITH_CUDA
  internal::CudaRelease(memory, pinned_host);
#else
  (void)pinned_host;
#endif
}

Status Unsupported(const char* op, Device device) {
  if (device == Device::kCuda) {
    return Status::FailedPrecondition(std::string(op) + " on device cuda: built without CUDA");
  }
  return Status::InvalidArgument(std::string(op) + ": unknown device " +
                                 std::to_string(static_cast<int>(device)));
}

Status Copy(const DeviceContext& ctx, void* dst, const void* src, size_t bytes,
            internal::CopyKind kind, const char* op) {
  if (bytes == 0) return OkStatus();
  if (ctx.device == Device::kCpu) {
    std::memcpy(dst, src, bytes);
    return OkStatus();
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return internal::CudaCopy(dst, src, bytes, kind, ctx.stream);
#else
  (void)kind;
#endif
  return Unsupported(op, ctx.device);
}

}  // namespace

using internal::CopyKind;

DeviceBuffer::~DeviceBuffer() { Free(); }

void DeviceBuffer::Free() {
  Release(device_, false, data_);
  data_ = nullptr;
  capacity_ = 0;
}

Status DeviceBuffer::Reserve(size_t bytes) {
  if (bytes <= capacity_) return OkStatus();
  const size_t target = Grown(capacity_, bytes);
  Free();
  TS_RETURN_IF_ERROR(Allocate(device_, false, target, name_, &data_));
  capacity_ = target;
  return OkStatus();
}

PinnedBuffer::~PinnedBuffer() { Free(); }

void PinnedBuffer::Free() {
  Release(device_, true, data_);
  data_ = nullptr;
  capacity_ = 0;
}

Status PinnedBuffer::Reserve(size_t bytes) {
  if (bytes <= capacity_) return OkStatus();
  const size_t target = Grown(capacity_, bytes);
  Free();
  TS_RETURN_IF_ERROR(Allocate(device_, true, target, name_, &data_));
  capacity_ = target;
  return OkStatus();
}

Status CopyToDevice(const DeviceContext& ctx, void* dst, const void* host_src, size_t bytes) {
  return Copy(ctx, dst, host_src, bytes, CopyKind::kHostToDevice, "CopyToDevice");
}

Status CopyToHost(const DeviceContext& ctx, void* host_dst, const void* src, size_t bytes) {
  return Copy(ctx, host_dst, src, bytes, CopyKind::kDeviceToHost, "CopyToHost");
}

Status CopyOnDevice(const DeviceContext& ctx, void* dst, const void* src, size_t bytes) {
  return Copy(ctx, dst, src, bytes, CopyKind::kDeviceToDevice, "CopyOnDevice");
}

Status FillZeros(const DeviceContext& ctx, void* dst, size_t bytes) {
  if (bytes == 0) return OkStatus();
  if (ctx.device == Device::kCpu) {
    std::memset(dst, 0, bytes);
    return OkStatus();
  }
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return internal::CudaFillZeros(dst, bytes, ctx.stream);
#endif
  return Unsupported("FillZeros", ctx.device);
}

Status SyncDevice(const DeviceContext& ctx) {
  if (ctx.device == Device::kCpu) return OkStatus();
#if TESSERA_WITH_CUDA
  if (ctx.device == Device::kCuda) return internal::CudaSync(ctx.stream);
#endif
  return Unsupported("SyncDevice", ctx.device);
}

}  // namespace tessera::kernels

// Memory in a context's space and copies between it and the host, for callers that keep their
// data where their kernels run (the CTR models' parameters and activations): host memory for
// kCpu, device memory on the current CUDA device for kCuda. The kernels themselves never
// allocate (kernels/dense.h); their callers do it here, once, and grow.
//
// Copies and fills of a kCuda context are queued on ctx.stream and return without waiting
// (SyncDevice waits); a kCpu context does them at once. Host memory handed to an asynchronous
// copy must stay untouched until SyncDevice returns; a PinnedBuffer makes such copies truly
// asynchronous (pageable memory is staged by the driver).
//
// Errors: an allocation that does not fit is FailedPrecondition, one line naming the buffer, the
// bytes asked for and (device memory) the bytes free; any other failed CUDA call is Internal with
// the CUDA error string. FailedPrecondition for kCuda in a build without CUDA.
// Thread-compatible: a buffer serves one thread at a time.
#pragma once

#include <cstddef>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::kernels {

// A buffer that only grows, in the memory of `device` (kCpu: host, 64-byte aligned; kCuda:
// cudaMalloc). Growing frees the old memory (kCuda: cudaFree waits for the device) and does NOT
// keep the contents; the new capacity is at least 1.5 times the old, so a slowly growing batch
// reallocates O(log) times.
class DeviceBuffer {
 public:
  // `name` (a string literal) names the buffer in allocation errors.
  DeviceBuffer(Device device, const char* name) : device_(device), name_(name) {}
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // At least `bytes` of capacity. FailedPrecondition ("<name> does not fit: allocate N bytes of
  // cuda device memory (F of T bytes free): ...") when the memory is not there; the buffer is
  // then empty.
  Status Reserve(size_t bytes);
  // Reserve(count * sizeof(T)) and the memory as T*.
  template <typename T>
  StatusOr<T*> Get(size_t count) {
    TS_RETURN_IF_ERROR(Reserve(count * sizeof(T)));
    return static_cast<T*>(data_);
  }
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }
  size_t capacity() const { return capacity_; }
  Device device() const { return device_; }

 private:
  void Free();

  const Device device_;
  const char* const name_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// Host memory that a kCuda copy reads or writes asynchronously: page-locked (cudaMallocHost) for
// kCuda, ordinary 64-byte aligned host memory for kCpu. Grows like DeviceBuffer (contents lost).
class PinnedBuffer {
 public:
  PinnedBuffer(Device device, const char* name) : device_(device), name_(name) {}
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  Status Reserve(size_t bytes);
  template <typename T>
  T* data() const {
    return static_cast<T*>(data_);
  }
  size_t capacity() const { return capacity_; }

 private:
  void Free();

  const Device device_;
  const char* const name_;
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

// bytes from host memory to the context's memory (kCuda: cudaMemcpyAsync on ctx.stream).
Status CopyToDevice(const DeviceContext& ctx, void* dst, const void* host_src, size_t bytes);
// bytes from the context's memory to host memory (kCuda: queued; host_dst is written only once
// SyncDevice returns).
Status CopyToHost(const DeviceContext& ctx, void* host_dst, const void* src, size_t bytes);
// bytes within the context's memory.
Status CopyOnDevice(const DeviceContext& ctx, void* dst, const void* src, size_t bytes);
// Zero bytes of the context's memory (kCuda: cudaMemsetAsync).
Status FillZeros(const DeviceContext& ctx, void* dst, size_t bytes);
// Waits until everything queued on the context is done (kCuda: cudaStreamSynchronize; kCpu: OK).
Status SyncDevice(const DeviceContext& ctx);

namespace internal {
enum class CopyKind { kHostToDevice, kDeviceToHost, kDeviceToDevice };
#if TESSERA_WITH_CUDA
// The kCuda halves of the above (kernels/device_memory_cuda.cu).
Status CudaAllocate(size_t bytes, bool pinned_host, const char* name, void** out);
void CudaRelease(void* memory, bool pinned_host);
Status CudaCopy(void* dst, const void* src, size_t bytes, CopyKind kind,
                struct CUstream_st* stream);
Status CudaFillZeros(void* dst, size_t bytes, struct CUstream_st* stream);
Status CudaSync(struct CUstream_st* stream);
#endif
}  // namespace internal

}  // namespace tessera::kernels

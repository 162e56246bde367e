// The device side of the emulated CUDA device: the built-in variables, barriers, warp shuffles
// and votes, atomics and shared memory that Tessera's kernels use, for .cu files compiled as C++
// (-DTESSERA_CUDA_EMULATION=ON). Included through the emulated cuda_runtime.h; kernels reach it
// only through the CUDA names and the TS_LAUNCH / TS_LAUNCH_COOPERATIVE / TS_SHARED macros of
// kernels/cuda_util.cuh.
//
// Thread model (kernels/cuda_emu/README.md has the whole story):
// - A grid runs on the host thread that drains its stream, one block at a time, the blocks in a
//   seeded random order.
// - kIndependent launches run a block's threads as a plain loop (in a seeded rotation); reaching
//   a barrier, a shuffle, a vote or shared memory there stops the process with a message.
// - kCooperative launches run each thread of a block as a fiber (Boost.Context). A fiber runs
//   until it reaches __syncthreads, __syncwarp, a shuffle or a vote, then the scheduler picks the
//   next fiber at random (seeded). Shuffles and votes are lane-synchronous: every live lane of the
//   mask arrives before any lane reads.
// - Shared memory (TS_SHARED) is per block and starts as 0xff bytes. Every access is checked: two
//   threads touching the same word between two __syncthreads, one of them writing and not both
//   atomically, is a race; the first race of a launch fails it (cudaErrorLaunchFailure, with the
//   kernel, array, index and threads on stderr).
// - Atomics are plain read-modify-writes: a grid runs on one host thread, and grids that share
//   memory are ordered by their streams, as on a GPU.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict
#define __launch_bounds__(...)

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
};

struct CUstream_st;

// The built-in variables of the thread the calling host thread is running now.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace cuda_emu {

enum class LaunchMode { kIndependent, kCooperative };

namespace internal {

enum class Access { kRead, kWrite, kAtomic };

// One TS_SHARED array of the running block (owned by the block).
struct SharedState;

// Queues a launch of `thread_body` (the kernel with its arguments bound) on `stream`
// (nullptr: the legacy default stream). Sets the calling thread's last error on a bad
// configuration, as a real launch does.
void EnqueueLaunch(const char* kernel, LaunchMode mode, dim3 grid, dim3 block,
                   struct CUstream_st* stream, std::function<void()> thread_body);
// The running block's storage for the TS_SHARED array declared at file:line (made by the first
// thread that reaches it).
SharedState* DeclareShared(const char* name, const char* file, int line, size_t elem_bytes,
                           int64_t count);
void* SharedData(SharedState* state);
int64_t SharedCount(SharedState* state);
// Records an access to element `index` of `state` by the running thread; checks bounds and races.
void SharedAccess(SharedState* state, int64_t index, Access access);
// Warp exchange: every live lane of `mask` deposits `bits`, then each reads `src_lane`'s bits.
uint64_t WarpExchange(unsigned mask, uint64_t bits, int src_lane, const char* op);
// The running thread's lane (0..31).
int LaneId();
void SyncThreads();
void SyncWarp(unsigned mask);

template <typename T>
uint64_t ToBits(T value) {
  static_assert(sizeof(T) <= sizeof(uint64_t) && std::is_trivially_copyable<T>::value,
                "shuffles move trivially copyable values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}

template <typename T>
T FromBits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

}  // namespace internal

// The kernel launch behind TS_LAUNCH / TS_LAUNCH_COOPERATIVE: the arguments are converted to the
// kernel's parameter types and copied, as a real launch copies them, then the launch is queued.
template <typename... Params, typename... Args>
void Launch(const char* kernel_name, LaunchMode mode, void (*kernel)(Params...), dim3 grid,
            dim3 block, struct CUstream_st* stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "wrong number of kernel arguments");
  std::tuple<std::decay_t<Params>...> params(std::forward<Args>(args)...);
  internal::EnqueueLaunch(kernel_name, mode, grid, block, stream,
                          [kernel, params]() { std::apply(kernel, params); });
}

template <typename T>
class SharedArray;

// A pointer to one element of a shared array, for atomics on shared memory.
template <typename T>
struct SharedPtr {
  internal::SharedState* state;
  int64_t index;
};

// One element of a shared array: every read and write is recorded.
template <typename T>
class SharedRef {
 public:
  SharedRef(internal::SharedState* state, int64_t index) : state_(state), index_(index) {}
  operator T() const {  // NOLINT(google-explicit-constructor): reads like the element
    internal::SharedAccess(state_, index_, internal::Access::kRead);
    return data()[index_];
  }
  SharedRef& operator=(T value) {
    internal::SharedAccess(state_, index_, internal::Access::kWrite);
    data()[index_] = value;
    return *this;
  }
  SharedRef& operator=(const SharedRef& other) { return *this = static_cast<T>(other); }
  SharedRef& operator+=(T v) { return *this = static_cast<T>(*this) + v; }
  SharedRef& operator-=(T v) { return *this = static_cast<T>(*this) - v; }
  SharedRef& operator*=(T v) { return *this = static_cast<T>(*this) * v; }
  SharedPtr<T> operator&() const { return SharedPtr<T>{state_, index_}; }

 private:
  T* data() const { return static_cast<T*>(internal::SharedData(state_)); }
  internal::SharedState* state_;
  int64_t index_;
};

// What TS_SHARED(type, name, count) declares: the running block's array, watched.
template <typename T>
class SharedArray {
 public:
  explicit SharedArray(internal::SharedState* state) : state_(state) {}
  SharedRef<T> operator[](int64_t index) const { return SharedRef<T>(state_, index); }

 private:
  internal::SharedState* state_;
};

template <typename T>
SharedArray<T> DeclareShared(int64_t count, const char* name, const char* file, int line) {
  static_assert(std::is_trivially_copyable<T>::value, "shared memory holds trivial types");
  return SharedArray<T>(internal::DeclareShared(name, file, line, sizeof(T), count));
}

}  // namespace cuda_emu

// ---- Barriers, shuffles and votes (the CUDA names) ----

inline void __syncthreads() { cuda_emu::internal::SyncThreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { cuda_emu::internal::SyncWarp(mask); }

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize) {
  const int lane = cuda_emu::internal::LaneId();
  const int base = lane & ~(width - 1);
  const int src = base + (src_lane & (width - 1));
  return cuda_emu::internal::FromBits<T>(
      cuda_emu::internal::WarpExchange(mask, cuda_emu::internal::ToBits(var), src, "__shfl_sync"));
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize) {
  const int lane = cuda_emu::internal::LaneId();
  const int base = lane & ~(width - 1);
  int src = lane ^ lane_mask;
  if (src < base || src >= base + width) src = lane;
  return cuda_emu::internal::FromBits<T>(cuda_emu::internal::WarpExchange(
      mask, cuda_emu::internal::ToBits(var), src, "__shfl_xor_sync"));
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  const int lane = cuda_emu::internal::LaneId();
  const int base = lane & ~(width - 1);
  int src = lane + static_cast<int>(delta);
  if (src >= base + width) src = lane;
  return cuda_emu::internal::FromBits<T>(cuda_emu::internal::WarpExchange(
      mask, cuda_emu::internal::ToBits(var), src, "__shfl_down_sync"));
}

template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize) {
  const int lane = cuda_emu::internal::LaneId();
  const int base = lane & ~(width - 1);
  int src = lane - static_cast<int>(delta);
  if (src < base) src = lane;
  return cuda_emu::internal::FromBits<T>(cuda_emu::internal::WarpExchange(
      mask, cuda_emu::internal::ToBits(var), src, "__shfl_up_sync"));
}

namespace cuda_emu::internal {
// Every live lane of `mask` votes; returns the bit mask of the lanes whose predicate held.
unsigned WarpBallot(unsigned mask, bool predicate, const char* op);
}  // namespace cuda_emu::internal

inline unsigned __ballot_sync(unsigned mask, int predicate) {
  return cuda_emu::internal::WarpBallot(mask, predicate != 0, "__ballot_sync");
}
inline int __any_sync(unsigned mask, int predicate) {
  return cuda_emu::internal::WarpBallot(mask, predicate != 0, "__any_sync") != 0;
}
inline int __all_sync(unsigned mask, int predicate) {
  return (cuda_emu::internal::WarpBallot(mask, predicate == 0, "__all_sync") & mask) == 0;
}

// ---- Atomics ----

template <typename T>
T atomicAdd(T* address, T value) {
  static_assert(std::is_arithmetic<T>::value, "atomicAdd on an arithmetic type");
  const T old = *address;
  *address = old + value;
  return old;
}
template <typename T>
T atomicAdd(cuda_emu::SharedPtr<T> address, T value) {
  cuda_emu::internal::SharedAccess(address.state, address.index,
                                   cuda_emu::internal::Access::kAtomic);
  T* data = static_cast<T*>(cuda_emu::internal::SharedData(address.state));
  const T old = data[address.index];
  data[address.index] = old + value;
  return old;
}
template <typename T>
T atomicMax(T* address, T value) {
  const T old = *address;
  if (value > old) *address = value;
  return old;
}
template <typename T>
T atomicMin(T* address, T value) {
  const T old = *address;
  if (value < old) *address = value;
  return old;
}
template <typename T>
T atomicExch(T* address, T value) {
  const T old = *address;
  *address = value;
  return old;
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}

// ---- Intrinsics ----

inline float __int_as_float(int bits) {
  return cuda_emu::internal::FromBits<float>(static_cast<uint32_t>(bits));
}
inline int __float_as_int(float value) {
  return static_cast<int>(static_cast<uint32_t>(cuda_emu::internal::ToBits(value)));
}
template <typename T>
T __ldg(const T* address) {
  return *address;
}

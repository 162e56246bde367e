// The emulated thread model: grids, blocks, fibers, barriers, warp exchanges and the shared-memory
// race check (include/cuda_emu/kernel.h describes the model).
#include <cuda_runtime.h>

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime_internal.h"

thread_local uint3 threadIdx = {0, 0, 0};
thread_local uint3 blockIdx = {0, 0, 0};
thread_local dim3 blockDim = dim3(1, 1, 1);
thread_local dim3 gridDim = dim3(1, 1, 1);

namespace cuda_emu::internal {

namespace ctx = boost::context;

// Who touched a shared word last, per barrier epoch (epoch 0: never).
struct Shadow {
  uint32_t write_epoch = 0;
  int32_t writer = -1;
  uint32_t read_epoch = 0;
  int32_t reader = -1;  // kManyReaders: more than one thread read it in read_epoch
  uint32_t atomic_epoch = 0;
};
constexpr int32_t kManyReaders = -2;

struct SharedState {
  const char* name;
  const char* file;
  int line;
  size_t elem_bytes;
  int64_t count;
  std::vector<unsigned char> data;
  std::vector<Shadow> shadow;
};

namespace {

constexpr size_t kFiberStackBytes = 128 << 10;

enum class ThreadState { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

// Fiber stacks are reused across blocks: a pool per host thread.
class PooledStack {
 public:
  ctx::stack_context allocate() {
    auto& pool = Pool();
    if (!pool.empty()) {
      ctx::stack_context stack = pool.back();
      pool.pop_back();
      return stack;
    }
    return ctx::protected_fixedsize_stack(kFiberStackBytes).allocate();
  }
  void deallocate(ctx::stack_context& stack) noexcept { Pool().push_back(stack); }

 private:
  static std::vector<ctx::stack_context>& Pool() {
    thread_local std::vector<ctx::stack_context> pool;
    return pool;
  }
};

struct EmuThread {
  ctx::fiber fiber;      // the thread while it is suspended
  ctx::fiber scheduler;  // the scheduler while the thread runs
  uint3 idx = {0, 0, 0};
  ThreadState state = ThreadState::kRunnable;
  int exchange_parity = 0;  // the slot set of the warp exchange it waits in
};

struct Warp {
  unsigned live = 0;     // lanes that exist and have not exited
  unsigned arrived = 0;  // lanes that reached the pending exchange
  unsigned mask = 0;     // its mask
  const char* op = nullptr;
  int parity = 0;
  uint64_t slots[2][32] = {};
};

// The block running on this host thread, in a cooperative launch.
struct Block {
  const char* kernel = nullptr;
  uint64_t seed = 0;
  int num_threads = 0;
  std::vector<EmuThread> threads;
  std::vector<Warp> warps;
  std::vector<int> runnable;
  uint64_t rng_state = 0;  // SplitMix64: the picks need speed, not quality
  int live = 0;            // threads that have not exited
  int at_barrier = 0;
  uint32_t epoch = 1;
  int current = -1;
  std::vector<std::unique_ptr<SharedState>> shared;
  std::string fault;  // the first fault of the block
};

thread_local Block* t_block = nullptr;
thread_local const char* t_independent_kernel = nullptr;  // kernel running as a plain loop

[[noreturn]] void Misuse(const char* what) {
  std::fprintf(stderr,
               "cuda_emu: kernel %s, launched with TS_LAUNCH, uses %s: launch it with "
               "TS_LAUNCH_COOPERATIVE (kernels/cuda_util.cuh)\n",
               t_independent_kernel, what);
  std::abort();
}

Block& Running(const char* what) {
  if (t_block == nullptr) {
    if (t_independent_kernel != nullptr) Misuse(what);
    std::fprintf(stderr, "cuda_emu: %s called outside a kernel\n", what);
    std::abort();
  }
  return *t_block;
}

std::string ThreadName(const Block& b, int linear) {
  const uint3& t = b.threads[linear].idx;
  return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," + std::to_string(t.z) +
         ")";
}

std::string BlockName() {
  return "block (" + std::to_string(blockIdx.x) + "," + std::to_string(blockIdx.y) + "," +
         std::to_string(blockIdx.z) + ")";
}

void Fault(Block& b, const std::string& message) {
  if (!b.fault.empty()) return;
  b.fault = "kernel " + std::string(b.kernel) + ", " + BlockName() + ": " + message +
            " (schedule seed " + std::to_string(b.seed) + ")";
}

// Suspends the running thread; the scheduler resumes it when it is runnable again.
void Yield(Block& b) {
  EmuThread& self = b.threads[b.current];
  self.scheduler = std::move(self.scheduler).resume();
}

void MakeRunnable(Block& b, int linear) {
  b.threads[linear].state = ThreadState::kRunnable;
  b.runnable.push_back(linear);
}

// Releases warp w's pending exchange when every live lane of its mask has arrived.
bool MaybeReleaseWarp(Block& b, int w) {
  Warp& warp = b.warps[w];
  if (warp.arrived == 0) return false;
  const unsigned needed = warp.mask & warp.live;
  if ((warp.arrived & needed) != needed) return false;
  for (unsigned waiting = warp.arrived; waiting != 0; waiting &= waiting - 1) {
    const int linear = w * 32 + __builtin_ctz(waiting);
    if (linear != b.current && b.threads[linear].state == ThreadState::kAtWarpBarrier) {
      MakeRunnable(b, linear);
    }
  }
  warp.arrived = 0;
  warp.parity ^= 1;
  return true;
}

// Linear index of a thread from its coordinates in the block.
int Linear(const uint3& t, const dim3& dim) {
  return static_cast<int>(t.x + dim.x * (t.y + dim.y * t.z));
}

uint3 Coordinates(int linear, const dim3& dim) {
  const unsigned l = static_cast<unsigned>(linear);
  return uint3{l % dim.x, (l / dim.x) % dim.y, l / (dim.x * dim.y)};
}

uint64_t NextRandom(Block& b) {
  uint64_t z = (b.rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void RunCooperativeBlock(Block& b, const std::function<void()>& body) {
  b.threads.clear();
  b.threads.resize(b.num_threads);
  b.warps.assign((b.num_threads + 31) / 32, Warp{});
  for (int i = 0; i < b.num_threads; ++i) b.warps[i / 32].live |= 1u << (i % 32);
  b.live = b.num_threads;
  b.runnable.clear();
  b.shared.clear();
  b.at_barrier = 0;
  b.epoch = 1;
  for (int i = 0; i < b.num_threads; ++i) {
    b.threads[i].idx = Coordinates(i, blockDim);
    b.threads[i].fiber =
        ctx::fiber(std::allocator_arg, PooledStack(), [&b, i, &body](ctx::fiber&& scheduler) {
          b.threads[i].scheduler = std::move(scheduler);
          body();
          b.threads[i].state = ThreadState::kDone;
          --b.live;
          b.warps[i / 32].live &= ~(1u << (i % 32));
          MaybeReleaseWarp(b, i / 32);  // lanes waiting for it need it no more
          return std::move(b.threads[i].scheduler);
        });
    b.runnable.push_back(i);
  }
  for (;;) {
    if (b.runnable.empty()) {
      const int live = b.live;
      if (live == 0) break;
      if (b.at_barrier == live) {  // every live thread is at __syncthreads: release them
        b.at_barrier = 0;
        ++b.epoch;
        for (int i = 0; i < b.num_threads; ++i) {
          if (b.threads[i].state == ThreadState::kAtBlockBarrier) MakeRunnable(b, i);
        }
        continue;
      }
      std::string where;
      for (int i = 0; i < b.num_threads && where.size() < 200; ++i) {
        if (b.threads[i].state == ThreadState::kAtWarpBarrier) {
          where += " " + ThreadName(b, i) + " in " + b.warps[i / 32].op + ";";
        }
      }
      Fault(b, "deadlock: " + std::to_string(b.at_barrier) + " of " + std::to_string(live) +
                   " live threads wait at __syncthreads, the others at a warp exchange:" + where);
      break;  // the suspended fibers unwind when b.threads is cleared
    }
    const size_t pick = static_cast<size_t>(NextRandom(b) % b.runnable.size());
    const int next = b.runnable[pick];
    b.runnable[pick] = b.runnable.back();
    b.runnable.pop_back();
    b.current = next;
    threadIdx = b.threads[next].idx;
    b.threads[next].fiber = std::move(b.threads[next].fiber).resume();
    b.current = -1;
  }
  b.threads.clear();  // destroys (unwinds) fibers left suspended by a deadlock
}

}  // namespace

cudaError_t RunGrid(const char* kernel, LaunchMode mode, dim3 grid, dim3 block,
                    const std::function<void()>& thread_body, uint64_t seed) {
  const dim3 saved_grid = gridDim, saved_block = blockDim;
  const uint3 saved_block_idx = blockIdx, saved_thread_idx = threadIdx;
  gridDim = grid;
  blockDim = block;
  const uint64_t num_blocks = static_cast<uint64_t>(grid.x) * grid.y * grid.z;
  const int num_threads = static_cast<int>(block.x * block.y * block.z);
  std::mt19937_64 rng(seed);
  // Blocks in a seeded rotation with a random direction: a kernel that depends on the order of
  // its blocks sees a different one from run to run.
  const uint64_t first = rng() % num_blocks;
  const bool forward = (rng() & 1) != 0;
  // The k-th block to run.
  auto block_at = [&](uint64_t k) {
    const uint64_t id = forward ? (first + k) % num_blocks : (first + num_blocks - k) % num_blocks;
    return uint3{static_cast<unsigned>(id % grid.x), static_cast<unsigned>(id / grid.x % grid.y),
                 static_cast<unsigned>(id / (static_cast<uint64_t>(grid.x) * grid.y))};
  };
  std::string fault;
  if (mode == LaunchMode::kIndependent) {
    t_independent_kernel = kernel;
    for (uint64_t k = 0; k < num_blocks; ++k) {
      blockIdx = block_at(k);
      const int start = static_cast<int>(rng() % static_cast<uint64_t>(num_threads));
      for (int t = 0; t < num_threads; ++t) {
        threadIdx = Coordinates((start + t) % num_threads, block);
        thread_body();
      }
    }
    t_independent_kernel = nullptr;
  } else {
    Block b;
    b.kernel = kernel;
    b.num_threads = num_threads;
    t_block = &b;
    for (uint64_t k = 0; k < num_blocks && b.fault.empty(); ++k) {
      blockIdx = block_at(k);
      b.seed = rng();
      b.rng_state = b.seed;
      RunCooperativeBlock(b, thread_body);
    }
    t_block = nullptr;
    fault = b.fault;
  }
  gridDim = saved_grid;
  blockDim = saved_block;
  blockIdx = saved_block_idx;
  threadIdx = saved_thread_idx;
  if (fault.empty()) return cudaSuccess;
  ReportFault(fault);
  return cudaErrorLaunchFailure;
}

void EnqueueLaunch(const char* kernel, LaunchMode mode, dim3 grid, dim3 block,
                   struct CUstream_st* stream, std::function<void()> thread_body) {
  if (!HaveDevice()) {
    SetLastError(cudaErrorNoDevice);
    return;
  }
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
      grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "cuda_emu: kernel %s: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n",
                 kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    SetLastError(cudaErrorInvalidConfiguration);
    return;
  }
  const uint64_t seed = NextLaunchSeed();
  auto body = std::make_shared<std::function<void()>>(std::move(thread_body));
  const cudaError_t error = Enqueue(stream, [kernel, mode, grid, block, body, seed]() {
    return RunGrid(kernel, mode, grid, block, *body, seed);
  });
  if (error != cudaSuccess) SetLastError(error);
}

// ---- Device-side calls ----

int LaneId() {
  if (t_block == nullptr) return static_cast<int>(Linear(threadIdx, blockDim) % 32);
  return Running("a warp lane").current % 32;
}

void SyncThreads() {
  Block& b = Running("__syncthreads");
  b.threads[b.current].state = ThreadState::kAtBlockBarrier;
  ++b.at_barrier;
  Yield(b);
}

uint64_t WarpExchange(unsigned mask, uint64_t bits, int src_lane, const char* op) {
  Block& b = Running(op);
  const int self = b.current;
  const int w = self / 32;
  const int lane = self % 32;
  Warp& warp = b.warps[w];
  if ((mask >> lane & 1u) == 0) {
    Fault(b, ThreadName(b, self) + " calls " + op + " with a mask that leaves out its own lane");
  }
  if (warp.arrived == 0) {
    warp.mask = mask;
    warp.op = op;
  } else if (warp.mask != mask || (warp.op != op && std::strcmp(warp.op, op) != 0)) {
    Fault(b, ThreadName(b, self) + " calls " + op + " while other lanes of its warp wait in " +
                 warp.op + " (diverged warp)");
  }
  const int parity = warp.parity;
  warp.slots[parity][lane] = bits;
  warp.arrived |= 1u << lane;
  b.threads[self].exchange_parity = parity;
  if (!MaybeReleaseWarp(b, w)) {
    b.threads[self].state = ThreadState::kAtWarpBarrier;
    Yield(b);
  }
  const int src = (src_lane >= 0 && src_lane < 32) ? src_lane : lane;
  return warp.slots[parity][src];
}

unsigned WarpBallot(unsigned mask, bool predicate, const char* op) {
  Block& b = Running(op);
  const int self = b.current;
  const int w = self / 32;
  const int lane = self % 32;
  (void)WarpExchange(mask, predicate ? 1 : 0, lane, op);
  // The slots of the exchange just completed hold every live lane's vote (no lane can start the
  // next exchange of this warp before this one reads).
  const Warp& warp = b.warps[w];
  const int parity = b.threads[self].exchange_parity;
  unsigned ballot = 0;
  const unsigned live = mask & (warp.live | (1u << lane));
  for (int l = 0; l < 32; ++l) {
    if ((live >> l & 1u) && warp.slots[parity][l] != 0) ballot |= 1u << l;
  }
  return ballot;
}

void SyncWarp(unsigned mask) { (void)WarpExchange(mask, 0, 0, "__syncwarp"); }

SharedState* DeclareShared(const char* name, const char* file, int line, size_t elem_bytes,
                           int64_t count) {
  Block& b = Running("TS_SHARED memory");
  for (const auto& s : b.shared) {
    if (s->file == file && s->line == line) return s.get();
  }
  auto state = std::make_unique<SharedState>();
  state->name = name;
  state->file = file;
  state->line = line;
  state->elem_bytes = elem_bytes;
  state->count = count;
  state->data.assign(elem_bytes * static_cast<size_t>(count), 0xff);
  state->shadow.assign(static_cast<size_t>(count), Shadow{});
  b.shared.push_back(std::move(state));
  return b.shared.back().get();
}

void* SharedData(SharedState* state) { return state->data.data(); }
int64_t SharedCount(SharedState* state) { return state->count; }

void SharedAccess(SharedState* state, int64_t index, Access access) {
  Block& b = Running("TS_SHARED memory");
  const int self = b.current;
  auto element = [&] { return std::string(state->name) + "[" + std::to_string(index) + "]"; };
  if (index < 0 || index >= state->count) {
    Fault(b, ThreadName(b, self) + " accesses " + element() + " out of bounds (" +
                 std::to_string(state->count) + " elements)");
    std::fprintf(stderr, "cuda_emu: out-of-bounds shared memory access: %s\n", b.fault.c_str());
    std::abort();  // the access itself would corrupt the emulator's memory
  }
  Shadow& s = state->shadow[static_cast<size_t>(index)];
  const uint32_t e = b.epoch;
  auto race = [&](const char* what, int32_t other) {
    Fault(b, "shared-memory race on " + element() + ": " + ThreadName(b, self) + " " + what + " " +
                 (other >= 0 ? ThreadName(b, other) : std::string("several threads")) +
                 " with no __syncthreads between");
  };
  switch (access) {
    case Access::kRead:
      if (s.write_epoch == e && s.writer != self) race("reads it after a write by", s.writer);
      if (s.atomic_epoch == e) race("reads it during atomics of", -1);
      if (s.read_epoch != e) {
        s.read_epoch = e;
        s.reader = self;
      } else if (s.reader != self) {
        s.reader = kManyReaders;
      }
      break;
    case Access::kWrite:
      if (s.write_epoch == e && s.writer != self) race("writes it after a write by", s.writer);
      if (s.read_epoch == e && s.reader != self) race("writes it after a read by", s.reader);
      if (s.atomic_epoch == e) race("writes it during atomics of", -1);
      s.write_epoch = e;
      s.writer = self;
      break;
    case Access::kAtomic:
      if (s.write_epoch == e && s.writer != self)
        race("updates it atomically after a write by", s.writer);
      if (s.read_epoch == e && s.reader != self)
        race("updates it atomically after a read by", s.reader);
      s.atomic_epoch = e;
      break;
  }
}

}  // namespace cuda_emu::internal

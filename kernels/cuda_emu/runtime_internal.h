// What the emulator's source files share: stream queues, the allocation table, fault reports and
// launch seeds. Not part of the emulated API.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>

namespace cuda_emu::internal {

// Queues `op` on `stream`; nullptr (the legacy default stream) first drains the current device's
// blocking streams, then runs `op` now and returns its error. An error of a queued op is kept by
// its stream and returned by the next synchronisation of that stream.
cudaError_t Enqueue(cudaStream_t stream, std::function<cudaError_t()> op);
// Runs everything queued on `stream` so far (nullptr: drains the current device's blocking
// streams) and returns, clearing it, the first error its work reported.
cudaError_t Drain(cudaStream_t stream);

// Drains the streams of `device` (the blocking ones only, or all); returns the first error their
// work reported.
cudaError_t DrainDevice(int device, bool blocking_only);
// The calling thread's pending error of work it ran on the legacy default stream, cleared.
cudaError_t TakeLegacyError();

// True when [ptr, ptr + bytes) lies inside one live cudaMalloc allocation.
bool IsDeviceRange(const void* ptr, size_t bytes);

void SetLastError(cudaError_t error);
int CurrentDevice();
bool HaveDevice();

// Prints "cuda_emu: <message>" on stderr and counts a kernel fault (cuda_emu::KernelFaults).
void ReportFault(const std::string& message);

// The seed of the next launch made by the calling thread.
uint64_t NextLaunchSeed();

// Runs a whole grid on the calling thread; cudaErrorLaunchFailure after a fault it reported.
cudaError_t RunGrid(const char* kernel, LaunchMode mode, dim3 grid, dim3 block,
                    const std::function<void()>& thread_body, uint64_t seed);

}  // namespace cuda_emu::internal

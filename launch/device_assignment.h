// Which device a worker computes on: the resolution of --device (cpu | cuda | auto) and
// --devices against what this host has. A pure function of its inputs, so that every rule is
// unit-tested without a GPU; launch/job.cc gathers the inputs (the CUDA runtime's device count,
// CUDA_VISIBLE_DEVICES through launcher_env.h, the worker's place among this host's workers).
//
// The rules:
// - Each worker of a host takes the device of its local index: the i-th entry of --devices, or
//   device i without it. The local index counts this host's workers only (in one process worker
//   i is index i; under mpirun/srun the workers of a host are ordered by the launcher's local
//   rank, OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID, and the scheduler and server ranks that
//   share the host take no device).
// - Ordinals are the CUDA runtime's, which has already applied CUDA_VISIBLE_DEVICES (with
//   CUDA_VISIBLE_DEVICES=2,3, ordinal 0 is physical GPU 2); the variable is only reported.
// - More workers on a host than devices for them, an ordinal the host does not have, or an
//   ordinal listed twice (NCCL refuses two ranks on one device) is InvalidArgument, one line
//   naming the counts; --device cuda without a usable device is FailedPrecondition with the
//   runtime's reason. Both end the job with exit status 2.
// - --device auto is cuda when a device is usable, else cpu; the assignment's note says which it
//   chose and why.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "kernels/device.h"

namespace tessera::launch {

enum class DeviceChoice { kCpu, kCuda, kAuto };

// "cpu" | "cuda" | "auto"; anything else is InvalidArgument listing the choices.
StatusOr<DeviceChoice> ParseDeviceChoice(const std::string& name);
// "0,1,3" -> {0, 1, 3}: non-negative integers, comma separated, none twice. InvalidArgument
// naming the bad entry otherwise (an empty string too).
StatusOr<std::vector<int>> ParseDeviceList(const std::string& list);

struct DeviceAssignmentInput {
  DeviceChoice choice = DeviceChoice::kCpu;
  std::vector<int> devices;  // --devices: this host's ordinals in local order; empty: 0, 1, ...
  // CUDA devices the runtime reports, 0 when none is usable (then unavailable_reason says why).
  int visible_devices = 0;
  std::string unavailable_reason;
  std::optional<std::string> cuda_visible_devices;  // the variable as set; reported only
  int workers_on_host = 1;                          // >= 1
  int local_index = 0;                              // in [0, workers_on_host)
};

struct DeviceAssignment {
  kernels::Device device = kernels::Device::kCpu;
  int cuda_device = 0;      // kCuda: the ordinal this worker uses
  int workers_on_host = 1;  // the input's: they share this host's CPUs (worker::WorkerOptions)
  // For the worker's start-up line, after its device: what the user should know about the
  // choice ("--device auto: ...", "CUDA_VISIBLE_DEVICES=2,3"); "" for nothing.
  std::string note;
};

StatusOr<DeviceAssignment> AssignDevice(const DeviceAssignmentInput& input);

// A CPU worker's threads, from its share of the CPUs the process may use (`cpus`, the affinity
// mask's count: taskset, Slurm's --cpus-per-task, a cgroup cpuset) among the `workers_on_host`
// (in one process and under mpirun on one host the same share, so the same bits): the dense
// layers' product threads (CTR) take the whole share; MF's compute threads are
// `compute_threads` (--compute-threads), fewer when the share is smaller (MF's bits do not depend
// on them). Never below 1.
struct WorkerThreads {
  int gemm = 1;
  int compute = 1;
};
WorkerThreads PlanWorkerThreads(int cpus, int workers_on_host, int compute_threads);

}  // namespace tessera::launch

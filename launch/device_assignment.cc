#include "launch/device_assignment.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/logging.h"

namespace tessera::launch {
namespace {

std::string Join(const std::vector<int>& values) {
  std::ostringstream out;
  for (size_t i = 0; i < values.size(); ++i) out << (i ? "," : "") << values[i];
  return out.str();
}

// " (CUDA_VISIBLE_DEVICES=2,3)" when the variable is set, for messages about ordinals.
std::string VisibleSuffix(const DeviceAssignmentInput& in) {
  if (!in.cuda_visible_devices) return "";
  return " (CUDA_VISIBLE_DEVICES=" + *in.cuda_visible_devices + ")";
}

std::string Plural(int n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

}  // namespace

StatusOr<DeviceChoice> ParseDeviceChoice(const std::string& name) {
  if (name == "cpu") return DeviceChoice::kCpu;
  if (name == "cuda") return DeviceChoice::kCuda;
  if (name == "auto") return DeviceChoice::kAuto;
  return Status::InvalidArgument("unknown device '" + name + "'; choices: cpu, cuda, auto");
}

StatusOr<std::vector<int>> ParseDeviceList(const std::string& list) {
  std::vector<int> devices;
  std::set<int> seen;
  for (size_t start = 0;;) {
    const size_t comma = list.find(',', start);
    const std::string entry =
        list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    size_t used = 0;
    int ordinal = -1;
    try {
      ordinal = std::stoi(entry, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (entry.empty() || used != entry.size() || ordinal < 0) {
      return Status::InvalidArgument("'" + entry + "' in '" + list +
                                     "' is not a device ordinal (a number >= 0)");
    }
    if (!seen.insert(ordinal).second) {
      return Status::InvalidArgument("'" + list + "' lists device " + std::to_string(ordinal) +
                                     " twice (each worker needs a device of its own)");
    }
    devices.push_back(ordinal);
    if (comma == std::string::npos) return devices;
    start = comma + 1;
  }
}

StatusOr<DeviceAssignment> AssignDevice(const DeviceAssignmentInput& in) {
  DeviceAssignment out;
  out.workers_on_host = std::max(in.workers_on_host, 1);
  const bool usable = in.visible_devices > 0;
  if (in.choice == DeviceChoice::kCpu) return out;
  if (!usable) {
    const std::string why =
        in.unavailable_reason.empty() ? "no usable CUDA device: 0 devices" : in.unavailable_reason;
    if (in.choice == DeviceChoice::kCuda) {
      return Status::FailedPrecondition("--device cuda: " + why + VisibleSuffix(in));
    }
    out.note = "--device auto chose cpu (" + why + ")";
    return out;
  }
  std::vector<int> devices = in.devices;
  if (devices.empty()) {
    for (int d = 0; d < in.visible_devices; ++d) devices.push_back(d);
  } else {
    for (int d : devices) {
      if (d >= in.visible_devices) {
        return Status::InvalidArgument(
            "--devices " + Join(devices) + ": device " + std::to_string(d) +
            " does not exist; this host has " + Plural(in.visible_devices, "CUDA device") +
            " (ordinals 0.." + std::to_string(in.visible_devices - 1) + ")" + VisibleSuffix(in));
      }
    }
  }
  if (in.workers_on_host > static_cast<int>(devices.size())) {
    const std::string which = in.devices.empty() ? "" : " (--devices " + Join(devices) + ")";
    return Status::InvalidArgument(
        Plural(in.workers_on_host, "worker") + " on this host but only " +
        Plural(static_cast<int>(devices.size()), "CUDA device") + which + VisibleSuffix(in) +
        " for them: each worker needs a device of its own; run fewer workers per host, give "
        "more --devices, or use --device cpu");
  }
  TS_CHECK(in.local_index >= 0 && in.local_index < in.workers_on_host)
      << "local index " << in.local_index << " of " << in.workers_on_host << " workers";
  out.device = kernels::Device::kCuda;
  out.cuda_device = devices[static_cast<size_t>(in.local_index)];
  std::vector<std::string> notes;
  if (in.choice == DeviceChoice::kAuto) notes.push_back("--device auto chose cuda");
  if (in.cuda_visible_devices) notes.push_back("CUDA_VISIBLE_DEVICES=" + *in.cuda_visible_devices);
  for (size_t i = 0; i < notes.size(); ++i) out.note += (i ? "; " : "") + notes[i];
  return out;
}

WorkerThreads PlanWorkerThreads(int cpus, int workers_on_host, int compute_threads) {
  WorkerThreads t;
  t.gemm = std::max(1, cpus / std::max(workers_on_host, 1));
  t.compute = std::max(1, std::min(compute_threads, t.gemm));
  return t;
}

}  // namespace tessera::launch

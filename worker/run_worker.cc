#include "worker/run_worker.h"

#include <memory>
#include <string>

#include "core/logging.h"
#include "kernels/device_resources.h"
#include "kernels/gemm_cpu.h"
#include "worker/train_loop.h"
#include "worker/worker_node.h"
#if TESSERA_WITH_NCCL
#include "worker/nccl_collective.h"
#endif

namespace tessera::worker {
namespace {

template <typename ModelOptions>
TrainLoopOptions LoopOptions(const ModelOptions& o, int64_t eval_every) {
  TrainLoopOptions loop;
  loop.epochs = o.epochs;
  loop.batch_size = o.batch_size;
  loop.eval_every = eval_every;
  loop.early_stop = o.early_stop;
  loop.seed = o.seed;
  loop.metrics_out = o.metrics_out;
  loop.progress = o.progress;
  loop.timeout = o.timeout;
  loop.recovery = o.recovery;
  return loop;
}

// The worker's device: MF splits a CPU step over --compute-threads; the CTR models run one compute
// thread on the CPU whose matrix products run on gemm_threads OpenMP threads, and, on CUDA,
// cuBLAS in TF32 only with --allow-tf32.
kernels::DeviceOptions DeviceOptionsOf(const WorkerOptions& options) {
  kernels::DeviceOptions device;
  device.deterministic = options.deterministic;
  device.device = options.device;
  device.cpu_threads = options.ctr ? 1 : options.mf.compute_threads;
  if (options.ctr) device.gemm_threads = options.gemm_threads;
  device.cuda_device = options.cuda_device;
  device.allow_tf32 = options.ctr && options.ctr_options.allow_tf32;
  return device;
}

// "cuda:1 (NVIDIA H100 80GB HBM3, 79.1 GiB; CUDA_VISIBLE_DEVICES=2,3)", "cpu (2 compute threads)".
StatusOr<std::string> DeviceLine(const WorkerOptions& options,
                                 const kernels::DeviceOptions& device) {
  std::string line;
  if (device.device == kernels::Device::kCuda) {
    TS_ASSIGN_OR_RETURN(line, kernels::DescribeCudaDevice(device.cuda_device));
  } else {
    line = std::string(kernels::DeviceName(device.device)) + " (" +
           std::to_string(device.cpu_threads) + " compute thread" +
           (device.cpu_threads == 1 ? "" : "s");
    if (options.ctr) {
      line += "; dense layers: " + kernels::GemmLibrary() + " on " +
              std::to_string(device.gemm_threads) + " thread" +
              (device.gemm_threads == 1 ? "" : "s");
    }
    line += ")";
  }
  if (!options.device_note.empty()) line += "; " + options.device_note;
  return line;
}

}  // namespace

Status RunWorker(const WorkerOptions& options, RpcNode* rpc, Collective* host_collective,
                 std::chrono::milliseconds register_timeout) {
  TrainLoopOptions loop_options =
      options.ctr ? LoopOptions(options.ctr_options, options.ctr_options.eval_every)
                  : LoopOptions(options.mf, /*eval_every=*/0);
  loop_options.pull_ahead = options.pull_ahead;
  return RunWorkerNode<TrainResult>(
             rpc, loop_options.recovery,
             [&]() -> StatusOr<TrainResult> {
               // The worker's device context, created once on this thread (which it makes the
               // thread of its CUDA device): the model runs every kernel through it.
               const kernels::DeviceOptions device_options = DeviceOptionsOf(options);
               TS_ASSIGN_OR_RETURN(auto device, kernels::DeviceResources::Create(device_options));
               TS_ASSIGN_OR_RETURN(const std::string device_line,
                                   DeviceLine(options, device_options));
               TS_LOG(INFO) << "computes on " << device_line;
               Collective* collective = host_collective;
               std::unique_ptr<Collective> device_collective;
               if (options.device == kernels::Device::kCuda) {
                 collective = nullptr;
#if TESSERA_WITH_NCCL
                 if (host_collective == nullptr) {
                   return Status::Internal("a CUDA worker needs the host collective");
                 }
                 // Queued on the compute stream: an all-reduce follows the kernels that wrote
                 // its input.
                 TS_ASSIGN_OR_RETURN(device_collective,
                                     NcclCollective::Create(host_collective, options.cuda_device,
                                                            device->context().stream));
                 collective = device_collective.get();
#else
                 // Without NCCL the dense replicas of several CUDA workers could not be kept
                 // equal: refuse rather than train them apart.
                 if (host_collective != nullptr && host_collective->size() > 1) {
                   return Status::FailedPrecondition(
                       std::to_string(host_collective->size()) +
                       " CUDA workers need NCCL for their dense all-reduce, and this build has "
                       "none (the NCCL library was not found next to the CUDA toolkit)");
                 }
#endif
               }
               std::unique_ptr<Model> model;
               if (options.ctr) {
                 model = std::make_unique<CtrTask>(options.ctr_options, device->context());
               } else {
                 TS_ASSIGN_OR_RETURN(model, MfModel::Create(options.mf, device->context()));
               }
               TrainLoop loop(loop_options, model.get(), rpc, collective);
               return loop.Run(register_timeout);
             })
      .status();
}

}  // namespace tessera::worker

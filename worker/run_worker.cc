#include "worker/run_worker.h"

#include <memory>

#include "kernels/device_resources.h"
#include "worker/train_loop.h"
#include "worker/worker_node.h"

namespace tessera::worker {
namespace {

template <typename ModelOptions>
TrainLoopOptions LoopOptions(const ModelOptions& o, int64_t eval_every) {
  TrainLoopOptions loop;
  loop.epochs = o.epochs;
  loop.batch_size = o.batch_size;
  loop.eval_every = eval_every;
  loop.seed = o.seed;
  loop.metrics_out = o.metrics_out;
  loop.progress = o.progress;
  loop.timeout = o.timeout;
  loop.recovery = o.recovery;
  return loop;
}

// MF runs on --device with --compute-threads (the kernels split a large step over both); the CTR
// models run on --device too, with one compute thread on the CPU (their GEMMs bring their own
// threads) and, on CUDA, cuBLAS in TF32 only with --allow-tf32.
kernels::DeviceOptions DeviceOptionsOf(const WorkerOptions& options) {
  kernels::DeviceOptions device;
  device.device = options.mf.device;
  if (!options.ctr) {
    device.cpu_threads = options.mf.compute_threads;
  } else {
    device.allow_tf32 = options.ctr_options.allow_tf32;
  }
  return device;
}

}  // namespace

Status RunWorker(const WorkerOptions& options, RpcNode* rpc, Collective* collective,
                 std::chrono::milliseconds register_timeout) {
  const TrainLoopOptions loop_options =
      options.ctr ? LoopOptions(options.ctr_options, options.ctr_options.eval_every)
                  : LoopOptions(options.mf, /*eval_every=*/0);
  return RunWorkerNode<TrainResult>(
             rpc, loop_options.recovery,
             [&]() -> StatusOr<TrainResult> {
               // The worker's device context, created once: the model runs every kernel
               // through it.
               TS_ASSIGN_OR_RETURN(auto device,
                                   kernels::DeviceResources::Create(DeviceOptionsOf(options)));
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

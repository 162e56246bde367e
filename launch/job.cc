#include "launch/job.h"

#include <mpi.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "core/inproc_transport.h"
#include "core/logging.h"
#include "core/shared_frames.h"
#include "core/zmq_transport.h"
#include "kernels/device.h"
#include "kernels/gemm_cpu.h"
#include "launch/device_assignment.h"
#include "launch/job_security.h"
#include "launch/node_thread.h"
#include "launch/recovery.h"
#include "launch/shared_memory_probe.h"
#include "scheduler/scheduler.h"
#include "server/server.h"
#include "tests/testing/fault_env.h"
#include "worker/inproc_collective.h"
#include "worker/mpi_collective.h"
#include "worker/run_worker.h"

namespace tessera::launch {
namespace {

// The Env every node of this process reaches checkpoint files and the liveness clock through:
// Env::Default(), or, for the cross-process fault tests only, the fault-injecting Env that the
// test hook TESSERA_TEST_FAULT_ENV describes (tests/README.md; FaultEnv::FromSpec). The one
// place that reads that variable. The Env lives as long as the process: every node's threads
// use it until they are joined, and the heartbeat callbacks until exit.
StatusOr<Env*> JobEnv() {
  const char* spec = std::getenv("TESSERA_TEST_FAULT_ENV");
  if (spec == nullptr || *spec == '\0') return Env::Default();
  TS_ASSIGN_OR_RETURN(auto env, testing::FaultEnv::FromSpec(Env::Default(), spec));
  TS_LOG(WARNING) << "test hook TESSERA_TEST_FAULT_ENV=" << spec
                  << ": checkpoint files go through a fault-injecting environment";
  return env.release();
}

// TESSERA_DIRECT_INDEX=0 keeps every MF id in the hash indexes, on the servers and in the
// worker's deduplication: the general path, which the direct arrays match bit for bit
// (tests/integration/direct_index_test.py). Any other value, or none: the direct arrays.
bool DirectIndexes() {
  const char* v = std::getenv("TESSERA_DIRECT_INDEX");
  return v == nullptr || std::string(v) != "0";
}

// TESSERA_PULL_AHEAD=0 sends every pull after the push of the step before (the general path,
// which the pull ahead matches bit for bit: tests/integration/pull_ahead_test.py). Any other
// value, or none: a one-worker job pulls ahead where the order allows (worker/train_loop.h).
bool PullAhead() {
  const char* v = std::getenv("TESSERA_PULL_AHEAD");
  return v == nullptr || std::string(v) != "0";
}

// An MF job of one worker in the blocked order: where the order pairs blocks (two bands or more
// of users and of items), the worker's pull of a step goes ahead of the push before it
// (worker/train_loop.h), and the server copies rows while the worker computes. One thread each
// then keeps the cores busy, where a helper on either side would take a core from the other: in
// one process on 2 cores, dim 128 ran 1.3x faster with --compute-threads 1 --threads-per-shard 1
// than with 2 and 2, and dim 32 the same. Where the order has no pairs, 1 and 1 ran as fast as 2
// and 2 (docs/PERFORMANCE.md); the job cannot tell before the workers read their data.
bool OneWorkerMayPullAhead(const TrainOptions& o) {
  return !o.ctr && o.workers == 1 && o.mf.blocked_order && PullAhead();
}

server::ServerOptions MakeServerOptions(const TrainOptions& o) {
  server::ServerOptions s;
  s.num_shard_threads = o.server_threads;
  // CTR workers keep both cores busy with dense layers while the servers apply (the CTR
  // benchmark was measured without a helper); MF workers wait for the servers unless the one
  // worker pulls ahead.
  s.threads_per_shard = o.threads_per_shard;
  if (s.threads_per_shard == 0) s.threads_per_shard = (o.ctr || OneWorkerMayPullAhead(o)) ? 1 : 2;
  s.deterministic = o.deterministic;
  if (o.ctr) {
    // Table 0: field embeddings; table 1: first-order weights (start at 0, as FTRL needs).
    server::TableOptions emb;
    emb.table_id = worker::kEmbeddingTable;
    emb.dim = o.ctr_options.model.emb_dim;
    emb.seed = o.init_seed;
    emb.init_std = o.init_std;
    emb.optimizer = o.optimizer;
    server::TableOptions linear;
    linear.table_id = worker::kLinearTable;
    linear.dim = 1;
    linear.seed = o.init_seed;
    linear.init_std = 0.0f;
    linear.optimizer = o.linear_optimizer;
    s.tables = {emb, linear};
    return s;
  }
  for (uint32_t table_id : {worker::kUserTable, worker::kItemTable}) {
    server::TableOptions t;
    t.table_id = table_id;
    t.dim = o.mf.dim + 1;  // factors + bias
    t.seed = o.init_seed;
    t.init_std = o.init_std;
    t.zero_tail = 1;  // the bias starts at 0
    t.optimizer = o.optimizer;
    t.direct_index = DirectIndexes();
    s.tables.push_back(t);
  }
  return s;
}

// The workers' part of the options: which model, and its data, model and loop options.
worker::WorkerOptions MakeWorkerOptions(const TrainOptions& o) {
  worker::WorkerOptions w;
  w.ctr = o.ctr;
  w.mf = o.mf;
  w.mf.direct_ids = DirectIndexes();
  if (w.mf.compute_threads == 0) w.mf.compute_threads = OneWorkerMayPullAhead(o) ? 1 : 2;
  w.ctr_options = o.ctr_options;
  w.deterministic = o.deterministic;
  w.pull_ahead = PullAhead();
  return w;
}

scheduler::SchedulerOptions MakeSchedulerOptions(Env* env, const TrainOptions& o, int workers,
                                                 const ResumePoint& resume) {
  scheduler::SchedulerOptions s;
  s.env = env;
  s.num_servers = o.servers;
  s.num_workers = workers;
  s.register_timeout = o.register_timeout;
  s.checkpoint_dir = o.checkpoint_dir;
  s.keep_checkpoints = o.keep_checkpoints;
  s.config_summary = o.summary;
  s.checkpoint_timeout = o.mf.timeout;
  s.resumed_from = resume.dir;
  return s;
}

// A temporary directory removed when this goes out of scope.
class ScratchDir {
 public:
  static StatusOr<std::unique_ptr<ScratchDir>> Create() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/tessera-demo-XXXXXX";
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) {
      return Status::Unavailable("cannot create a scratch directory under " + pattern);
    }
    return std::unique_ptr<ScratchDir>(new ScratchDir(buf.data()));
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Generates the embedded demo's planted data set and points the options at it.
StatusOr<std::unique_ptr<ScratchDir>> PrepareEmbeddedData(TrainOptions* o) {
  TS_ASSIGN_OR_RETURN(auto dir, ScratchDir::Create());
  TS_LOG(INFO) << "no --train given: generating a planted rating set (" << o->embedded_data.users
               << " users x " << o->embedded_data.items << " items, " << o->embedded_data.ratings
               << " ratings, rank " << o->embedded_data.rank << ", noise σ "
               << o->embedded_data.noise << ") in " << dir->path();
  TS_RETURN_IF_ERROR(worker::GenerateRatings(o->embedded_data, dir->path()));
  o->mf.train_path = dir->path() + "/train.txt";
  o->mf.test_path = dir->path() + "/test.txt";
  o->mf.noise_floor = o->embedded_data.noise;
  return dir;
}

// The root cause among the nodes' results: the scheduler's abort reason names the node that
// failed first; otherwise the first failing worker, then server.
Status FirstFailure(const Status& scheduler, const std::vector<Status>& workers,
                    const std::vector<Status>& servers) {
  if (!scheduler.ok()) return scheduler;
  for (const Status& s : workers)
    if (!s.ok()) return s;
  for (const Status& s : servers)
    if (!s.ok()) return s;
  return OkStatus();
}

// A signal that reached a server or worker process: the scheduler decides what it means.
void SendSignalNotice(RpcNode* rpc, int signal) {
  proto::SignalNotice notice;
  notice.set_signal(signal);
  (void)rpc->Send(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_SIGNAL, notice));
}

void LogStartup(const TrainOptions& o, const std::string& mode) {
  TS_LOG(INFO) << "tessera train (" << mode << "): " << o.servers << " server(s), "
               << "options:\n"
               << o.summary;
  if (!o.defaults_line.empty()) TS_LOG(INFO) << o.defaults_line;
}

// What AssignDevice needs to know about this host, whichever worker asks. A CPU job does not
// touch the CUDA runtime.
DeviceAssignmentInput HostDevices(const TrainOptions& o, const LaunchEnv& env) {
  DeviceAssignmentInput in;
  in.choice = o.device;
  in.devices = o.devices;
  in.cuda_visible_devices = env.cuda_visible_devices;
  if (o.device != DeviceChoice::kCpu) {
    StatusOr<int> count = kernels::CudaDeviceCount();
    if (count.ok()) {
      in.visible_devices = *count;
    } else {
      in.unavailable_reason = count.status().message();
    }
  }
  return in;
}

// The workers' options with worker `assignment`'s device.
worker::WorkerOptions WithDevice(worker::WorkerOptions w, const DeviceAssignment& assignment) {
  w.device = assignment.device;
  w.mf.device = assignment.device;
  w.cuda_device = assignment.cuda_device;
  w.device_note = assignment.note;
  const WorkerThreads threads =
      PlanWorkerThreads(kernels::AvailableCpus(), assignment.workers_on_host, w.mf.compute_threads);
  w.gemm_threads = threads.gemm;
  w.mf.compute_threads = threads.compute;
  return w;
}

// This worker's device under mpirun/srun (collective over `workers`, the workers' communicator).
// The workers of a host are those of a shared-memory split of `workers`, ordered by the
// launcher's local rank (else by world rank), so a host's scheduler and server ranks take no
// device. --device auto picks cuda only where every worker can use it: their collectives must
// match.
StatusOr<DeviceAssignment> AssignMpiWorkerDevice(const TrainOptions& o, const LaunchEnv& env,
                                                 MPI_Comm workers, int world_rank) {
  DeviceAssignmentInput in = HostDevices(o, env);
  MPI_Comm host = MPI_COMM_NULL;
  const int key = env.local_rank >= 0 ? env.local_rank : world_rank;
  if (MPI_Comm_split_type(workers, MPI_COMM_TYPE_SHARED, key, MPI_INFO_NULL, &host) !=
      MPI_SUCCESS) {
    return Status::Internal("MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) of the workers failed");
  }
  MPI_Comm_rank(host, &in.local_index);
  MPI_Comm_size(host, &in.workers_on_host);
  MPI_Comm_free(&host);
  if (o.device == DeviceChoice::kAuto) {
    int usable = in.visible_devices > 0 ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &usable, 1, MPI_INT, MPI_MIN, workers);
    if (!usable && in.visible_devices > 0) {
      in.visible_devices = 0;
      in.unavailable_reason = "a worker on another host has no usable CUDA device";
    }
  }
  return AssignDevice(in);
}

}  // namespace

Status RunTrainInProcess(const TrainOptions& options, const LaunchEnv& launch_env) {
  // SIGTERM / SIGUSR1 are taken by the watcher from here on.
  SignalWatcher signals(nullptr);
  TrainOptions o = options;
  // Worker r takes device r (of --devices): every worker of this process is on this host.
  std::vector<DeviceAssignment> devices;
  DeviceAssignmentInput host_devices = HostDevices(o, launch_env);
  host_devices.workers_on_host = o.workers;
  for (int r = 0; r < o.workers; ++r) {
    host_devices.local_index = r;
    TS_ASSIGN_OR_RETURN(DeviceAssignment assignment, AssignDevice(host_devices));
    devices.push_back(assignment);
  }
  o.mf.device = devices[0].device;
  // Loopback ports are open to every user of this host: the nodes authenticate each other.
  std::optional<auth::JobSecret> secret;
  if (o.transport == TransportKind::kZmq) {
    TS_ASSIGN_OR_RETURN(secret, JobSecretInProcess(o));
  }
  std::unique_ptr<ScratchDir> scratch;
  if (o.embedded_default) {
    TS_ASSIGN_OR_RETURN(scratch, PrepareEmbeddedData(&o));
  }
  ZmqTransportOptions zmq_options;
  if (o.transport == TransportKind::kZmq && o.shared_memory) {
    zmq_options.shared_memory = SharedMemoryWorksInProcess();
  }
  if (o.transport == TransportKind::kZmq) {
    zmq_options.secret = secret;
    zmq_options.members = JobMembers(o.servers, o.workers);
  }
  LogStartup(o, o.transport != TransportKind::kZmq ? "one process"
                : zmq_options.shared_memory
                    ? "one process, ZeroMQ loopback, large frames in shared memory"
                    : "one process, ZeroMQ loopback");
  TS_ASSIGN_OR_RETURN(Env * env, JobEnv());
  server::ServerOptions server_options = MakeServerOptions(o);
  const auto tables = DescribeTables(server_options, o.ctr);
  TS_ASSIGN_OR_RETURN(ResumePoint resume, PrepareResume(env, o, tables, o.workers));
  if (resume.finished) return OkStatus();  // said so; nothing to train, no metrics written
  ApplyRecovery(env, o, resume, tables, &server_options, &o);
  InProcHub hub;
  std::vector<NodeId> ids = {NodeId::Scheduler()};
  for (int r = 0; r < o.servers; ++r) ids.push_back(NodeId::Server(r));
  for (int r = 0; r < o.workers; ++r) ids.push_back(NodeId::Worker(r));
  std::vector<std::unique_ptr<Transport>> transports;
  for (const NodeId& id : ids) {
    if (o.transport == TransportKind::kZmq) {
      TS_ASSIGN_OR_RETURN(auto t, ZmqTransport::Create(id, zmq_options));
      for (const NodeId& peer : ids) t->SetPeerPid(peer, static_cast<int>(getpid()));
      transports.push_back(std::move(t));
    } else {
      transports.push_back(std::make_unique<InProcTransport>(&hub, id));
    }
  }
  for (auto& t : transports) {
    TS_RETURN_IF_ERROR(t->AddPeer(NodeId::Scheduler(), transports[0]->endpoint().empty()
                                                           ? "inproc"
                                                           : transports[0]->endpoint()));
  }
  std::vector<std::unique_ptr<RpcNode>> rpcs;
  for (auto& t : transports) rpcs.push_back(std::make_unique<RpcNode>(t.get()));

  // The scheduler listens before any other node starts.
  logging::SetThreadLogTag(NodeId::Scheduler().ToString());
  scheduler::Scheduler sched(MakeSchedulerOptions(env, o, o.workers, resume), rpcs[0].get());
  TS_RETURN_IF_ERROR(sched.Start());
  signals.SetHandler([&sched](int signal) { sched.RequestCheckpoint(signal); });
  std::vector<Status> server_status(o.servers), worker_status(o.workers);
  std::vector<std::thread> threads;
  // A node whose thread cannot be started ends the job in its name (the nodes already started
  // stop at the scheduler's abort); no later node is started.
  Status started;
  for (int r = 0; r < o.servers && started.ok(); ++r) {
    RpcNode* rpc = rpcs[1 + r].get();
    started = StartNodeThread(&threads, rpc, [&, r, rpc] {
      logging::SetThreadLogTag(NodeId::Server(r).ToString());
      server_status[r] = RunNode(
          rpc, [&] { return server::RunServerNode(server_options, rpc, o.register_timeout); });
    });
  }
  // CTR models all-reduce their dense gradients through this group (threads of this process), or,
  // on CUDA, through the NCCL communicators each worker builds over it.
  worker::InProcessCollectiveGroup group(o.workers, o.mf.timeout);
  const worker::WorkerOptions worker_options = MakeWorkerOptions(o);
  for (int r = 0; r < o.workers && started.ok(); ++r) {
    RpcNode* rpc = rpcs[1 + o.servers + r].get();
    started = StartNodeThread(&threads, rpc, [&, r, rpc] {
      logging::SetThreadLogTag(NodeId::Worker(r).ToString());
      worker_status[r] = RunNode(rpc, [&] {
        return worker::RunWorker(WithDevice(worker_options, devices[r]), rpc, &group.Member(r),
                                 o.register_timeout);
      });
      // Release the other workers if they wait in a collective for this one.
      if (!worker_status[r].ok()) group.Abort(worker_status[r].message());
    });
    if (!started.ok()) group.Abort(started.message());
  }
  if (!started.ok()) sched.Abort(started);
  Status sched_status = sched.Run();
  for (auto& t : threads) t.join();
  signals.SetHandler(nullptr);
  rpcs[0]->Stop();
  return FirstFailure(sched_status, worker_status, server_status);
}

Status RunTrainMpi(const TrainOptions& options, const LaunchEnv& env, bool* reported) {
  // SIGTERM / SIGUSR1 are taken by the watcher from here on.
  SignalWatcher signals(nullptr);
  // A failed job must not leave this process hanging (e.g. in a collective with a lost peer).
  ExitWatchdog watchdog(std::chrono::seconds(5));
  TrainOptions o = options;
  int rank = 0, size = 1;
  MPI_Init(nullptr, nullptr);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // MPI_Finalize synchronises with every rank: after a failure (a peer may be gone or stopped)
  // it could wait forever, so a failed rank leaves without it and mpirun ends the rest. It
  // first gives its peers a moment (more than a heartbeat period) to hear of the failure and
  // print their own line.
  auto finish = [&watchdog, reported](Status s) {
    if (s.ok()) {
      MPI_Finalize();
    } else {
      *reported = watchdog.reported();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    return s;
  };
  const int workers = size - 1 - o.servers;
  if (workers < 1) {
    return finish(Status::InvalidArgument(
        "under " + env.launcher + " with " + std::to_string(size) + " ranks and --servers " +
        std::to_string(o.servers) + " there is no rank left for a worker (need at least " +
        std::to_string(o.servers + 2) + " ranks)"));
  }
  if (o.workers_given && o.workers != workers) {
    return finish(Status::InvalidArgument("--workers " + std::to_string(o.workers) +
                                          " does not match " + std::to_string(size) +
                                          " ranks - 1 scheduler - " + std::to_string(o.servers) +
                                          " servers = " + std::to_string(workers)));
  }
  o.workers = workers;
  const NodeId self = rank == 0           ? NodeId::Scheduler()
                      : rank <= o.servers ? NodeId::Server(rank - 1)
                                          : NodeId::Worker(rank - 1 - o.servers);
  logging::SetThreadLogTag(self.ToString());

  // Bootstrap: bind on loopback when every rank runs on this host, else on the address the host
  // name resolves to; share the job secret; then exchange endpoints and pids with MPI_Allgather.
  constexpr int kNameBytes = 256;
  std::vector<char> host(kNameBytes, 0);
  std::strncpy(host.data(), HostName().c_str(), kNameBytes - 1);
  std::vector<char> hosts(static_cast<size_t>(kNameBytes) * size);
  MPI_Allgather(host.data(), kNameBytes, MPI_CHAR, hosts.data(), kNameBytes, MPI_CHAR,
                MPI_COMM_WORLD);
  bool one_host = true;
  for (int r = 0; r < size; ++r)
    one_host &= std::strcmp(hosts.data() + r * kNameBytes, host.data()) == 0;
  // Collective, the same branch on every rank: a failure is reported by rank 0 alone.
  auto secret = ShareJobSecret(o, rank, one_host);
  if (!secret.ok()) {
    const Status s = finish(secret.status());
    *reported = rank != 0;
    return s;
  }
  ZmqTransportOptions zmq_options;
  zmq_options.secret = *secret;
  zmq_options.members = JobMembers(o.servers, workers);
  auto listen_address = ListenAddress(one_host);
  if (!listen_address.ok()) return finish(listen_address.status());
  zmq_options.bind_host = *listen_address;
  // Every rank takes the same branch: one_host and the flag are the same everywhere.
  if (one_host && o.shared_memory)
    zmq_options.shared_memory = SharedMemoryWorksAcrossRanks(rank, size);
  auto transport = ZmqTransport::Create(self, zmq_options);
  if (!transport.ok()) return finish(transport.status());
  const std::string endpoint = (*transport)->endpoint();
  std::vector<char> mine(kNameBytes, 0);
  std::strncpy(mine.data(), endpoint.c_str(), kNameBytes - 1);
  std::vector<char> all(static_cast<size_t>(kNameBytes) * size);
  MPI_Allgather(mine.data(), kNameBytes, MPI_CHAR, all.data(), kNameBytes, MPI_CHAR,
                MPI_COMM_WORLD);
  const std::vector<int> pids = GatherPids(size);  // checked in shared-frame descriptors
  for (int r = 0; r < size; ++r) {
    const NodeId peer = r == 0           ? NodeId::Scheduler()
                        : r <= o.servers ? NodeId::Server(r - 1)
                                         : NodeId::Worker(r - 1 - o.servers);
    Status s = (*transport)->AddPeer(peer, std::string(all.data() + r * kNameBytes));
    if (!s.ok()) return finish(s);
    if (std::strcmp(hosts.data() + r * kNameBytes, host.data()) == 0) {
      (*transport)->SetPeerPid(peer, pids[r]);
    }
  }

  std::unique_ptr<ScratchDir> scratch;
  if (o.embedded_default && self.role == Role::kWorker) {
    // Every worker generates the same planted set (same seed) and reads its own partition.
    auto dir = PrepareEmbeddedData(&o);
    if (!dir.ok()) return finish(dir.status());
    scratch = std::move(*dir);
  }
  // The workers' own communicator, for the CTR models' dense all-reduce (collective call: every
  // rank takes part, servers and the scheduler with MPI_UNDEFINED).
  MPI_Comm worker_comm = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, self.role == Role::kWorker ? 1 : MPI_UNDEFINED, rank,
                 &worker_comm);
  StatusOr<DeviceAssignment> device = DeviceAssignment();
  if (self.role == Role::kWorker) device = AssignMpiWorkerDevice(o, env, worker_comm, rank);
  // Every rank learns whether a worker could not take its device (collective call), so that the
  // job ends at once with the first such worker's line, the others leaving quietly, rather than
  // with one line per worker of the host and mpirun's SIGTERM to the rest.
  int first_failed = device.ok() ? size : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_failed, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_failed < size) {
    if (worker_comm != MPI_COMM_NULL) MPI_Comm_free(&worker_comm);
    const Status s = finish(
        rank == first_failed ? device.status()
                             : Status::FailedPrecondition("rank " + std::to_string(first_failed) +
                                                          " could not take its device"));
    *reported = rank != first_failed;
    return s;
  }
  o.mf.device = device->device;
  // Every rank checks the checkpoint to resume from the same way (nothing writes one yet).
  server::ServerOptions server_options = MakeServerOptions(o);
  const auto tables = DescribeTables(server_options, o.ctr);
  auto job_env = JobEnv();
  auto resume = job_env.ok() ? PrepareResume(*job_env, o, tables, workers)
                             : StatusOr<ResumePoint>(job_env.status());
  if (!resume.ok()) {
    if (worker_comm != MPI_COMM_NULL) MPI_Comm_free(&worker_comm);
    return finish(resume.status());
  }
  if (resume->finished) {  // every rank read the same checkpoint: all leave, nothing to train
    if (worker_comm != MPI_COMM_NULL) MPI_Comm_free(&worker_comm);
    return finish(OkStatus());
  }
  ApplyRecovery(*job_env, o, *resume, tables, &server_options, &o);
  auto on_abort = [&watchdog](const Status& reason) { watchdog.Arm(reason); };
  server_options.heartbeat_interval = std::chrono::milliseconds(500);
  server_options.heartbeat_timeout = o.heartbeat_timeout;
  server_options.on_abort = on_abort;
  for (worker::RecoveryOptions* r : {&o.mf.recovery, &o.ctr_options.recovery}) {
    r->heartbeat_interval = std::chrono::milliseconds(500);
    r->heartbeat_timeout = o.heartbeat_timeout;
    r->on_abort = on_abort;
  }
  RpcNode rpc(transport->get());
  Status result;
  switch (self.role) {
    case Role::kScheduler: {
      LogStartup(o, env.launcher + ", " + std::to_string(size) + " ranks" +
                        (zmq_options.shared_memory ? ", large frames in shared memory" : ""));
      scheduler::SchedulerOptions sched_options =
          MakeSchedulerOptions(*job_env, o, workers, *resume);
      sched_options.heartbeat_timeout = o.heartbeat_timeout;
      scheduler::Scheduler sched(sched_options, &rpc);
      result = sched.Start();
      if (result.ok()) {
        signals.SetHandler([&sched](int signal) { sched.RequestCheckpoint(signal); });
        result = sched.Run();
        signals.SetHandler(nullptr);
      }
      rpc.Stop();
      break;
    }
    case Role::kServer:
      signals.SetHandler([&rpc](int signal) { SendSignalNotice(&rpc, signal); });
      result = server::RunServerNode(server_options, &rpc, o.register_timeout);
      signals.SetHandler(nullptr);
      break;
    case Role::kWorker:
      signals.SetHandler([&rpc](int signal) { SendSignalNotice(&rpc, signal); });
      {
        auto collective = worker::MpiCollective::Create(worker_comm);
        if (!collective.ok()) {
          result = collective.status();
          break;
        }
        result = worker::RunWorker(WithDevice(MakeWorkerOptions(o), *device), &rpc,
                                   collective->get(), o.register_timeout);
      }
      break;
  }
  signals.SetHandler(nullptr);
  if (worker_comm != MPI_COMM_NULL) MPI_Comm_free(&worker_comm);
  return finish(result);
}

}  // namespace tessera::launch

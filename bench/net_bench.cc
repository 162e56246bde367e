// Loopback pull/push throughput: a real tessera Server (ZmqTransport, its own process) driven by
// PsClient, next to raw ZeroMQ moving the same bytes in the same request/reply shape, measured
// alternately in the same run; a second tessera server whose frames go through shared memory
// (--shared-memory auto of a one-host job); and a third whose sockets are authenticated and
// encrypted with CURVE (the default of a multi-process job; frames through the sockets).
//
// Raw ZeroMQ: the parent's DEALER talks to a child's ROUTER. Pull: request [cmd][keys], reply
// [cmd][rows] with the rows sent zero-copy from one preallocated buffer (no lookup, no copy:
// transport only). Push: request [cmd][keys][values] (both zero-copy), reply [cmd], with a
// sliding window (the ceiling) and in rounds like PsClient's. Stream: the values frame one way
// only, then one round trip to flush.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <numeric>
#include <thread>
#include <zmq.hpp>

#include "bench/benches.h"
#include "core/rpc.h"
#include "core/shard_map.h"
#include "core/shared_frames.h"
#include "core/zmq_transport.h"
#include "kernels/random_math.h"
#include "server/server.h"
#include "worker/ps_client.h"

namespace tessera::bench {
namespace {

void NoFree(void*, void*) {}

// The raw ZeroMQ server: answers 'P' with `reply_bytes` of rows, 'U' and 'F' with an empty
// acknowledgement, 'S' with nothing, and 'Q' by exiting.
int RawServerMain(int in_fd, int out_fd, size_t reply_bytes) {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::rcvhwm, 0);
  router.set(zmq::sockopt::sndhwm, 0);
  router.set(zmq::sockopt::linger, 1000);
  router.bind("tcp://127.0.0.1:*");
  WriteLineFd(out_fd, router.get(zmq::sockopt::last_endpoint));
  std::thread(ServeCpuQueries, in_fd, out_fd).detach();
  std::vector<float> rows(reply_bytes / sizeof(float), 0.5f);
  while (true) {
    std::vector<zmq::message_t> parts;
    do {
      parts.emplace_back();
      if (!router.recv(parts.back(), zmq::recv_flags::none)) return 1;
    } while (parts.back().more());
    if (parts.size() < 2 || parts[1].size() < 1) return 1;
    const char cmd = *static_cast<const char*>(parts[1].data());
    if (cmd == 'S') continue;
    const char ack = static_cast<char>(cmd + ('a' - 'A'));
    router.send(parts[0], zmq::send_flags::sndmore);
    if (cmd == 'P') {
      router.send(zmq::const_buffer(&ack, 1), zmq::send_flags::sndmore);
      zmq::message_t values(rows.data(), reply_bytes, &NoFree, nullptr);
      router.send(values, zmq::send_flags::none);
    } else {
      router.send(zmq::const_buffer(&ack, 1), zmq::send_flags::none);
    }
    if (cmd == 'Q') return 0;
  }
}

// The secret of the CURVE server and its client (fixed: the bench measures cost, not secrecy).
auth::JobSecret BenchSecret() {
  auth::JobSecret secret;
  secret.bytes.fill(7);
  return secret;
}

ZmqTransportOptions PsTransportOptions(bool shared, bool curve) {
  ZmqTransportOptions options;
  options.shared_memory = shared;
  if (curve) {
    options.secret = BenchSecret();
    options.members = {NodeId::Server(0), NodeId::Worker(0)};
  }
  return options;
}

// The tessera server: one table (dim, Adagrad), one worker, shard map of one server. With
// `shared`, large frames go through shared memory both ways (core/shared_frames.h); with
// `curve`, the sockets use CURVE.
int PsServerMain(int in_fd, int out_fd, const NetBenchOptions& o, bool shared, bool curve) {
  shared_frames::Enable(shared);
  auto transport = ZmqTransport::Create(NodeId::Server(0), PsTransportOptions(shared, curve));
  if (!transport.ok()) return 1;
  (*transport)->SetPeerPid(NodeId::Worker(0), static_cast<int>(getppid()));
  RpcNode rpc(transport->get());
  server::ServerOptions so;
  server::TableOptions t;
  t.table_id = 0;
  t.dim = o.dim;
  t.optimizer.kind = kernels::OptimizerKind::kAdagrad;
  so.tables = {t};
  so.num_shard_threads = o.server_threads;
  auto server = server::Server::Create(so, 0, &rpc);
  if (!server.ok()) return 1;
  server::Server* s = server->get();
  if (!rpc.Start([s](Message&& m) { s->HandleRequest(std::move(m)); }).ok()) return 1;
  if (!s->Start(ShardMap::Even(1, 1), 1).ok()) return 1;
  WriteLineFd(out_fd, (*transport)->endpoint());
  if (!(*transport)->AddPeer(NodeId::Worker(0), ReadLineFd(in_fd)).ok()) return 1;
  WriteLineFd(out_fd, "ready");
  std::thread cpu_queries(ServeCpuQueries, in_fd, out_fd);
  Status status = s->WaitForShutdown(std::chrono::hours(1));
  cpu_queries.join();  // the parent says "bye" before SHUTDOWN
  rpc.Stop();
  s->Stop();
  const server::ServerStats st = s->stats();
  WriteLineFd(out_fd, std::to_string(st.rows) + " rows, " + std::to_string(st.pulls) + " pulls, " +
                          std::to_string(st.pushes) + " pushes, " + std::to_string(st.rejected) +
                          " rejected");
  return status.ok() && st.rejected == 0 ? 0 : 1;
}

// Keeps `depth` requests in flight for `seconds`: send() issues one, receive() completes the
// oldest. Returns completed requests per second (the ones sent before the clock started and the
// ones drained after it stopped are not counted).
template <typename Send, typename Receive>
double SlidingWindow(int depth, double seconds, Send&& send, Receive&& receive) {
  for (int i = 0; i < depth; ++i) send();
  int64_t done = 0;
  auto start = Clock::now();
  double elapsed = 0;
  while ((elapsed = SecondsSince(start)) < seconds) {
    receive();
    ++done;
    send();
  }
  elapsed = SecondsSince(start);
  for (int i = 0; i < depth; ++i) receive();
  return static_cast<double>(done) / elapsed;
}

class RawClient {
 public:
  RawClient(const std::string& endpoint, const std::vector<uint64_t>& keys, size_t value_bytes)
      : ctx_(1),
        dealer_(ctx_, zmq::socket_type::dealer),
        keys_(keys),
        values_(value_bytes / sizeof(float), 1e-3f) {
    dealer_.set(zmq::sockopt::rcvhwm, 0);
    dealer_.set(zmq::sockopt::sndhwm, 0);
    dealer_.set(zmq::sockopt::linger, 0);
    dealer_.connect(endpoint);
  }

  void Send(char cmd) {
    const bool keys = cmd == 'P' || cmd == 'U';
    const bool values = cmd == 'U' || cmd == 'S';
    dealer_.send(zmq::const_buffer(&cmd, 1),
                 keys || values ? zmq::send_flags::sndmore : zmq::send_flags::none);
    if (keys) {
      zmq::message_t k(keys_.data(), keys_.size() * sizeof(uint64_t), &NoFree, nullptr);
      dealer_.send(k, values ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    if (values) {
      zmq::message_t v(values_.data(), values_.size() * sizeof(float), &NoFree, nullptr);
      dealer_.send(v, zmq::send_flags::none);
    }
  }
  // Receives one reply; returns its payload bytes.
  size_t Receive() {
    size_t bytes = 0;
    zmq::message_t part;
    do {
      if (!dealer_.recv(part, zmq::recv_flags::none)) {
        std::fprintf(stderr, "raw receive failed\n");
        std::exit(2);
      }
      bytes += part.size();
    } while (part.more());
    return bytes;
  }
  // One-way: `count` value frames, then a round trip. Returns bytes per second.
  double Stream(int64_t count) {
    auto start = Clock::now();
    for (int64_t i = 0; i < count; ++i) Send('S');
    Send('F');
    Receive();
    return static_cast<double>(count) * static_cast<double>(values_.size() * sizeof(float)) /
           SecondsSince(start);
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t dealer_;
  std::vector<uint64_t> keys_;
  std::vector<float> values_;
};

void Check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(2);
  }
}

}  // namespace

bool RunNetBench(const NetBenchOptions& o, JsonLines* json) {
  const size_t value_bytes = static_cast<size_t>(o.keys) * o.dim * sizeof(float);
  // Children first: fork() before this process has any thread or ZeroMQ context.
  ChildProcess raw_server([&](int in, int out) { return RawServerMain(in, out, value_bytes); });
  ChildProcess ps_server([&](int in, int out) { return PsServerMain(in, out, o, false, false); });
  ChildProcess shm_server([&](int in, int out) { return PsServerMain(in, out, o, true, false); });
  ChildProcess curve_server([&](int in, int out) { return PsServerMain(in, out, o, false, true); });
  const std::string raw_endpoint = raw_server.ReadLine();

  // Keys: a shuffled key space cut into requests of `keys` unique keys each.
  std::vector<uint64_t> space(static_cast<size_t>(o.key_space));
  for (size_t i = 0; i < space.size(); ++i) space[i] = kernels::SplitMix64(i);
  uint64_t state = 42;
  for (size_t i = space.size(); i > 1; --i) {
    state = kernels::SplitMix64(state);
    std::swap(space[i - 1], space[state % i]);
  }
  const size_t num_requests = space.size() / static_cast<size_t>(o.keys);

  RawClient raw(raw_endpoint, std::vector<uint64_t>(space.begin(), space.begin() + o.keys),
                value_bytes);

  // One PsClient per tessera server: the socket one, and the one with shared memory.
  struct PsSide {
    bool shared = false;
    std::unique_ptr<ZmqTransport> transport;
    std::unique_ptr<RpcNode> rpc;
    std::unique_ptr<worker::PsClient> ps;
    std::deque<std::pair<size_t, worker::PsClient::PendingPull>> pulls;
    int64_t clock = 0;
    double warm_seconds = 0;
  };
  const ShardMap shard_map = ShardMap::Even(1, 1);
  TableLayout layout;
  layout.dims = {o.dim};
  auto connect = [&](PsSide& side, ChildProcess& server, bool shared, bool curve) {
    side.shared = shared;
    const std::string endpoint = server.ReadLine();
    auto transport = ZmqTransport::Create(NodeId::Worker(0), PsTransportOptions(shared, curve));
    Check(transport.status(), "worker transport");
    side.transport = std::move(*transport);
    side.transport->SetPeerPid(NodeId::Server(0), server.pid());
    Check(side.transport->AddPeer(NodeId::Server(0), endpoint), "add peer");
    server.WriteLine(side.transport->endpoint());
    if (server.ReadLine() != "ready") return false;
    side.rpc = std::make_unique<RpcNode>(side.transport.get());
    Check(side.rpc->Start([](Message&&) {}), "rpc start");
    side.ps = std::make_unique<worker::PsClient>(side.rpc.get(), shard_map, layout,
                                                 std::chrono::seconds(120));
    return true;
  };
  PsSide tcp, shm, curve;
  if (!connect(tcp, ps_server, false, false) || !connect(shm, shm_server, true, false) ||
      !connect(curve, curve_server, false, true)) {
    return false;
  }
  std::vector<worker::BatchPlan> plans;
  for (size_t r = 0; r < num_requests; ++r) {
    std::vector<std::vector<uint64_t>> unique(1);
    unique[0].assign(space.begin() + r * o.keys, space.begin() + (r + 1) * o.keys);
    plans.push_back(tcp.ps->Plan(unique));
  }

  size_t next_plan = 0;
  std::vector<const float*> rows;
  auto ps_send_pull = [&](PsSide& side) {
    const size_t p = next_plan++ % plans.size();
    side.pulls.emplace_back(p, side.ps->StartPull(plans[p], /*clock=*/0, proto::FLAG_NONE));
  };
  auto ps_receive_pull = [&](PsSide& side) {
    Check(side.ps->FinishPull(plans[side.pulls.front().first], side.pulls.front().second, &rows),
          "pull");
    side.pulls.pop_front();
  };
  // Every row of the key space is created here, before anything is timed.
  for (PsSide* side : {&tcp, &shm, &curve}) {
    auto warm = Clock::now();
    for (size_t r = 0; r < plans.size(); ++r) {
      ps_send_pull(*side);
      if (side->pulls.size() >= static_cast<size_t>(o.depth)) ps_receive_pull(*side);
    }
    while (!side->pulls.empty()) ps_receive_pull(*side);
    side->warm_seconds = SecondsSince(warm);
  }
  const double warm_seconds = tcp.warm_seconds;

  // Pushes go in rounds of `depth` (PsClient::WaitPushes waits for all of them); clocks
  // increase by one per push, as a worker's steps do. Gradients of the shared-memory client are
  // allocated in shared blocks, the others in ordinary memory.
  auto ps_push_round = [&](PsSide& side) {
    shared_frames::Enable(side.shared);
    for (int i = 0; i < o.depth; ++i) {
      const size_t p = next_plan++ % plans.size();
      float* grads = nullptr;
      Frame frame = worker::PsClient::AllocateGradients(plans[p], &grads);
      std::fill_n(grads, plans[p].total_floats, 1e-3f);
      Check(side.ps->StartPush(plans[p], std::move(frame), side.clock++), "push");
    }
    Check(side.ps->WaitPushes(), "push ack");
    shared_frames::Enable(false);
  };
  auto ps_push_rate = [&](PsSide& side, double seconds) {
    int64_t done = 0;
    auto start = Clock::now();
    while (SecondsSince(start) < seconds) {
      ps_push_round(side);
      done += o.depth;
    }
    return static_cast<double>(done) / SecondsSince(start);
  };

  // Size the one-way stream from a short probe so that it lasts about `seconds`.
  const double probe = raw.Stream(64);
  const int64_t stream_count =
      std::max<int64_t>(64, static_cast<int64_t>(probe * o.seconds / value_bytes));

  auto wanted = [&](const char* phase) {
    return o.only.empty() ||
           ("," + o.only + ",").find("," + std::string(phase) + ",") != std::string::npos;
  };
  // Replies received so far (all phases): the denominator of CPU per request.
  int64_t completed = 0;
  auto raw_receive = [&] {
    raw.Receive();
    ++completed;
  };
  // Raw pushes in the same rounds as PsClient's (send `depth`, wait for all): how much of the
  // gap to the sliding window is the round structure itself.
  auto raw_push_rounds = [&](double seconds) {
    int64_t done = 0;
    auto start = Clock::now();
    while (SecondsSince(start) < seconds) {
      for (int i = 0; i < o.depth; ++i) raw.Send('U');
      for (int i = 0; i < o.depth; ++i) raw_receive();
      done += o.depth;
    }
    return static_cast<double>(done) / SecondsSince(start);
  };
  // One measured phase: its rate per rep, and the CPU time (all threads) that the client
  // process and the server process spent per request, which a loaded machine distorts far less
  // than the rate.
  struct Phase {
    Samples rate;  // requests/s
    double client_cpu = 0, server_cpu = 0;
    int64_t requests = 0;
  };
  auto run_phase = [&](Phase& phase, ChildProcess& server, auto&& fn) {
    const double client0 = ProcessCpuSeconds();
    const double server0 = CpuSecondsOf(server);
    const int64_t done0 = completed;
    phase.rate.Add(fn());
    phase.client_cpu += ProcessCpuSeconds() - client0;
    phase.server_cpu += CpuSecondsOf(server) - server0;
    phase.requests += completed - done0;
  };
  Phase stream, raw_pull, ps_pull, shm_pull, curve_pull, raw_push, raw_push_round, ps_push,
      shm_push, curve_push;
  auto pull_phase = [&](PsSide& side) {
    return SlidingWindow(
        o.depth, o.seconds, [&] { ps_send_pull(side); },
        [&] {
          ps_receive_pull(side);
          ++completed;
        });
  };
  auto push_phase = [&](PsSide& side) {
    const int64_t before = next_plan;
    const double rate = ps_push_rate(side, o.seconds);
    completed += static_cast<int64_t>(next_plan) - before;
    return rate;
  };
  for (int rep = 0; rep < o.reps; ++rep) {
    if (wanted("stream")) {
      run_phase(stream, raw_server, [&] {
        const double bytes_per_sec = raw.Stream(stream_count);
        completed += stream_count;
        return bytes_per_sec / static_cast<double>(value_bytes);
      });
    }
    if (wanted("raw_pull")) {
      run_phase(raw_pull, raw_server, [&] {
        return SlidingWindow(
            o.depth, o.seconds, [&] { raw.Send('P'); }, raw_receive);
      });
    }
    if (wanted("ps_pull")) run_phase(ps_pull, ps_server, [&] { return pull_phase(tcp); });
    if (wanted("shm_pull")) run_phase(shm_pull, shm_server, [&] { return pull_phase(shm); });
    if (wanted("curve_pull")) {
      run_phase(curve_pull, curve_server, [&] { return pull_phase(curve); });
    }
    if (wanted("raw_push")) {
      run_phase(raw_push, raw_server, [&] {
        return SlidingWindow(
            o.depth, o.seconds, [&] { raw.Send('U'); }, raw_receive);
      });
    }
    if (wanted("raw_push_rounds")) {
      run_phase(raw_push_round, raw_server, [&] { return raw_push_rounds(o.seconds); });
    }
    if (wanted("ps_push")) run_phase(ps_push, ps_server, [&] { return push_phase(tcp); });
    if (wanted("shm_push")) run_phase(shm_push, shm_server, [&] { return push_phase(shm); });
    if (wanted("curve_push")) {
      run_phase(curve_push, curve_server, [&] { return push_phase(curve); });
    }
  }
  raw_server.WriteLine("bye");
  ps_server.WriteLine("bye");
  shm_server.WriteLine("bye");
  curve_server.WriteLine("bye");
  raw.Send('Q');
  raw.Receive();
  for (PsSide* side : {&tcp, &shm, &curve}) {
    Message shutdown;
    shutdown.header.set_command(proto::COMMAND_SHUTDOWN);
    Check(side->rpc->CallAndWait(NodeId::Server(0), std::move(shutdown), std::chrono::seconds(60))
              .status(),
          "shutdown");
    side->rpc->Stop();
  }
  const std::string server_stats = ps_server.ReadLine();
  const std::string shm_stats = shm_server.ReadLine();
  const std::string curve_stats = curve_server.ReadLine();
  const int raw_exit = raw_server.Wait();
  const int ps_exit = ps_server.Wait();
  const int shm_exit = shm_server.Wait();
  const int curve_exit = curve_server.Wait();
  const int64_t shared_sent = shm.transport->shared_frames_sent();
  const int64_t shared_received = shm.transport->shared_frames_received();

  const double mb = static_cast<double>(value_bytes) / 1e6;
  std::printf(
      "\n== Loopback pull/push, tcp://127.0.0.1: %d unique keys x dim %d = %.2f MB of "
      "values per request, %d in flight, %.1f s x %d reps each, alternating\n",
      o.keys, o.dim, mb, o.depth, o.seconds, o.reps);
  std::printf(
      "   tessera server: own process, 1 table (%lld rows, Adagrad, all created before "
      "timing: %.1f s), %d shard thread(s)\n",
      static_cast<long long>(num_requests * o.keys), warm_seconds, o.server_threads);
  std::printf("%-34s %8s %9s %6s %7s %9s %9s  %s\n", "what", "req/s", "rows/s", "GB/s", "vs raw",
              "client", "server", "all reps (GB/s)");
  std::printf("%-34s %8s %9s %6s %7s %9s %9s\n", "", "", "", "", "", "CPU/req", "CPU/req");
  auto row = [&](const char* name, const Phase& phase, const Phase* raw_ref, const char* key) {
    const double req = phase.rate.Median();
    if (req == 0) return;
    const double gbps = req * mb / 1e3;
    char ratio[16] = "";
    double r = 0;
    if (raw_ref != nullptr && raw_ref->rate.Median() > 0) {
      r = req / raw_ref->rate.Median();
      std::snprintf(ratio, sizeof(ratio), "%.2fx", r);
    }
    const double n = static_cast<double>(std::max<int64_t>(phase.requests, 1));
    const double client_us = phase.client_cpu / n * 1e6;
    const double server_us = phase.server_cpu / n * 1e6;
    std::printf("%-34s %8.0f %9s %6.2f %7s %7.0fus %7.0fus  %s\n", name, req,
                Human(req * o.keys).c_str(), gbps, ratio, client_us, server_us,
                phase.rate.List(1e3 / mb).c_str());
    json->Write(key, {{"dim", o.dim},
                      {"keys", o.keys},
                      {"depth", o.depth},
                      {"requests_per_sec", req},
                      {"rows_per_sec", req * o.keys},
                      {"gb_per_sec", gbps},
                      {"gb_per_sec_best", phase.rate.Best() * mb / 1e3},
                      {"ratio_to_raw", r},
                      {"client_cpu_us_per_request", client_us},
                      {"server_cpu_us_per_request", server_us}});
  };
  row("raw ZeroMQ one-way stream", stream, nullptr, "raw_stream");
  row("raw ZeroMQ pull-shaped req/reply", raw_pull, nullptr, "raw_pull");
  row("tessera PS pull (PsClient)", ps_pull, &raw_pull, "ps_pull");
  row("raw ZeroMQ push-shaped req/reply", raw_push, nullptr, "raw_push");
  row("raw ZeroMQ push-shaped, rounds", raw_push_round, nullptr, "raw_push_rounds");
  row("tessera PS push (PsClient, rounds)", ps_push, &raw_push, "ps_push");
  row("tessera PS pull, shared memory", shm_pull, &raw_pull, "shm_pull");
  row("tessera PS push, shared memory", shm_push, &raw_push, "shm_push");
  row("tessera PS pull, CURVE", curve_pull, &raw_pull, "curve_pull");
  row("tessera PS push, CURVE (rounds)", curve_push, &raw_push, "curve_push");
  if (ps_pull.rate.Median() > 0 && curve_pull.rate.Median() > 0) {
    std::printf("   CURVE / plain: pull %.3f, push %.3f (requests/s, medians)\n",
                curve_pull.rate.Median() / ps_pull.rate.Median(),
                ps_push.rate.Median() > 0 ? curve_push.rate.Median() / ps_push.rate.Median() : 0);
  }
  std::printf(
      "   CPU/req: CPU time of all threads of that process per request (client: this "
      "process; server: the child)\n");
  std::printf(
      "   shared memory: the client's transport and the server's pass frames of >= 64 KiB as "
      "descriptors of memfd blocks (this client sent %lld, received %lld)\n",
      static_cast<long long>(shared_sent), static_cast<long long>(shared_received));
  std::printf(
      "   server: %s; shared-memory server: %s; CURVE server: %s; exit status raw %d, tessera "
      "%d, %d, %d\n",
      server_stats.c_str(), shm_stats.c_str(), curve_stats.c_str(), raw_exit, ps_exit, shm_exit,
      curve_exit);
  return raw_exit == 0 && ps_exit == 0 && shm_exit == 0 && curve_exit == 0;
}

}  // namespace tessera::bench

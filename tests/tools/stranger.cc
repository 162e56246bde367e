// tessera_stranger: a hostile process on the network of a Tessera job, for the soak and auth
// tests (tests/integration/soak_test.py, auth_test.py). For a fixed time it floods the given
// ZeroMQ endpoints with
//   raw     random bytes over plain TCP (sometimes after a valid ZMTP signature);
//   zmtp    random multipart messages over ZMTP (random routing ids: control and non-UTF-8 bytes);
//   forged  well-formed Tessera messages: headers claiming worker:0, a server or the scheduler;
//           PUSH with any clock and huge or NaN gradients, PULL, forged replies, ABORT, SIGNAL
//           (SIGTERM), SHUTDOWN, DONE, CHECKPOINT, REGISTER, REDUCE, RELEASE, and shared-frame
//           descriptors naming descriptors of the job's processes (--pids).
// Each ZeroMQ connection uses the NULL mechanism or, with probability --curve, CURVE with a fresh
// key pair and a server key that is not the job's. Sockets are recycled (connection churn).
//
//   tessera_stranger --endpoint tcp://127.0.0.1:PORT [--endpoint ...] --seconds S --seed N
//       (or --ports P1,P2,... [--host 127.0.0.1] in place of the endpoints)
//       [--pids P,P,...] [--max-clock N] [--rate MSGS_PER_S] [--curve FRACTION]
//       [--raw FRACTION] [--forged FRACTION] [--node-ids FRACTION]
//       [--forge push,pull,reply,abort,signal,control,checkpoint,register,release,shared]
//
// It never blocks on a peer (every send is non-blocking, sockets linger 0) and on SIGTERM or the
// end of the time prints one line of counts and exits 0.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>
#include <zmq.hpp>

#include "proto/checkpoint.pb.h"
#include "proto/tessera.pb.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Options {
  std::vector<std::string> endpoints;
  double seconds = 10;
  uint64_t seed = 1;
  std::vector<int> pids;
  int64_t max_clock = 1000;
  double rate = 2000;     // messages (or raw connections) per second, all kinds together
  double curve = 0.5;     // fraction of ZeroMQ connections that use CURVE
  double raw = 0.1;       // fraction of attempts that are raw TCP garbage
  double forged = 0.6;    // fraction that are forged Tessera messages (the rest: random ZMTP)
  double node_ids = 0.5;  // fraction of ZeroMQ connections whose routing id is a node's name
  // Kinds of forged message (Stranger::Forged): all by default, or those named by --forge.
  std::vector<int> forge_kinds = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
};

// --forge names -> the kinds Stranger::Forged draws from (push and shared weigh double).
const std::map<std::string, std::vector<int>>& ForgeNames() {
  static const auto* names = new std::map<std::string, std::vector<int>>{
      {"push", {0, 1}}, {"pull", {2}},       {"reply", {3}},      {"abort", {4}},
      {"signal", {5}},  {"control", {6}},    {"checkpoint", {7}}, {"register", {8}},
      {"release", {9}}, {"shared", {10, 11}}};
  return *names;
}

[[noreturn]] void Usage(const std::string& error) {
  std::fprintf(stderr,
               "tessera_stranger: %s\nusage: tessera_stranger --endpoint tcp://HOST:PORT ... "
               "(or --ports P,P [--host H]) "
               "--seconds S --seed N [--pids P,P] [--max-clock N] [--rate R] [--curve F] [--raw F] "
               "[--forged F] [--node-ids F] [--forge KIND,...]\n",
               error.c_str());
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  std::vector<std::string> ports;
  std::string host = "127.0.0.1";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) Usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--endpoint") {
      o.endpoints.push_back(value);
    } else if (flag == "--ports") {  // with --host: the form of the auth test's stranger
      for (size_t at = 0; at < value.size();) {
        size_t comma = value.find(',', at);
        if (comma == std::string::npos) comma = value.size();
        ports.push_back(value.substr(at, comma - at));
        at = comma + 1;
      }
    } else if (flag == "--host") {
      host = value;
    } else if (flag == "--seconds") {
      o.seconds = std::stod(value);
    } else if (flag == "--seed") {
      o.seed = std::stoull(value);
    } else if (flag == "--pids") {
      for (size_t at = 0; at < value.size();) {
        size_t comma = value.find(',', at);
        if (comma == std::string::npos) comma = value.size();
        o.pids.push_back(std::stoi(value.substr(at, comma - at)));
        at = comma + 1;
      }
    } else if (flag == "--max-clock") {
      o.max_clock = std::stoll(value);
    } else if (flag == "--rate") {
      o.rate = std::stod(value);
    } else if (flag == "--curve") {
      o.curve = std::stod(value);
    } else if (flag == "--forge") {
      o.forge_kinds.clear();
      for (size_t at = 0; at < value.size();) {
        size_t comma = value.find(',', at);
        if (comma == std::string::npos) comma = value.size();
        auto it = ForgeNames().find(value.substr(at, comma - at));
        if (it == ForgeNames().end()) Usage("unknown --forge kind " + value.substr(at, comma - at));
        o.forge_kinds.insert(o.forge_kinds.end(), it->second.begin(), it->second.end());
        at = comma + 1;
      }
    } else if (flag == "--node-ids") {
      o.node_ids = std::stod(value);
    } else if (flag == "--raw") {
      o.raw = std::stod(value);
    } else if (flag == "--forged") {
      o.forged = std::stod(value);
    } else {
      Usage("unknown flag " + flag);
    }
  }
  for (const std::string& port : ports) o.endpoints.push_back("tcp://" + host + ":" + port);
  if (o.endpoints.empty()) Usage("no --endpoint");
  return o;
}

// "tcp://HOST:PORT" -> (HOST, PORT).
std::pair<std::string, int> HostPort(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  const size_t start = endpoint.find("://");
  if (colon == std::string::npos || start == std::string::npos) Usage("bad endpoint " + endpoint);
  return {endpoint.substr(start + 3, colon - start - 3), std::stoi(endpoint.substr(colon + 1))};
}

class Stranger {
 public:
  explicit Stranger(const Options& o) : o_(o), rng_(o.seed) {}

  void Run() {
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(o_.seconds);
    const auto period = std::chrono::duration<double>(1.0 / o_.rate);
    auto next = start;
    while (!g_stop && std::chrono::steady_clock::now() < end) {
      const std::string& endpoint = o_.endpoints[Uniform(o_.endpoints.size())];
      const double kind = std::uniform_real_distribution<double>(0, 1)(rng_);
      if (kind < o_.raw) {
        RawBytes(endpoint);
      } else if (kind < o_.raw + o_.forged) {
        Send(endpoint, Forged());
      } else {
        Send(endpoint, RandomMultipart());
      }
      next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
      std::this_thread::sleep_until(next);
    }
    sockets_.clear();
    std::printf(
        "stranger: %lld raw connections, %lld zmtp messages queued (%lld null, %lld curve), "
        "%lld refused by a full queue, %lld forged, %lld sockets opened\n",
        raw_, queued_null_ + queued_curve_, queued_null_, queued_curve_, full_, forged_, opened_);
    std::fflush(stdout);
  }

 private:
  using Parts = std::vector<std::string>;

  uint64_t Uniform(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  std::string RandomBytes(size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(Uniform(256));
    return s;
  }

  // Plain TCP: connect, write garbage, close. Half the time the garbage follows a valid ZMTP 3.0
  // signature and version, so the peer's ZMTP decoder (not just its greeting check) sees it.
  void RawBytes(const std::string& endpoint) {
    auto [host, port] = HostPort(endpoint);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &addr.sin_addr);
    timeval timeout{0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      std::string bytes;
      if (Chance(0.5)) bytes = std::string("\xff\0\0\0\0\0\0\0\x01\x7f\x03\x00", 12);
      bytes += RandomBytes(1 + Uniform(2048));
      ssize_t ignored = write(fd, bytes.data(), bytes.size());
      (void)ignored;
      ++raw_;
    }
    close(fd);
  }

  Parts RandomMultipart() {
    Parts parts(1 + Uniform(6));
    for (auto& p : parts) p = RandomBytes(Uniform(4) == 0 ? 0 : Uniform(512));
    return parts;
  }

  tessera::proto::NodeIdProto* SetNode(tessera::proto::NodeIdProto* node) {
    const int which = static_cast<int>(Uniform(4));
    node->set_role(which == 0   ? tessera::proto::ROLE_SCHEDULER
                   : which == 1 ? tessera::proto::ROLE_SERVER
                                : tessera::proto::ROLE_WORKER);
    node->set_rank(which == 0 ? 0 : Chance(0.7) ? 0 : static_cast<int>(Uniform(4)));
    return node;
  }

  // Gradients or rows that would ruin a model: huge, NaN, infinite or merely large.
  std::string HostileFloats(size_t n) {
    std::string s(n * sizeof(float), '\0');
    const float choices[] = {1e30f, std::numeric_limits<float>::quiet_NaN(),
                             std::numeric_limits<float>::infinity(), -3e38f, 100.0f};
    const float value = choices[Uniform(5)];
    for (size_t i = 0; i < n; ++i) std::memcpy(&s[i * sizeof(float)], &value, sizeof(float));
    return s;
  }

  // (fd, inode, size) of an open file of `pid`: a memfd when it has one, else any descriptor
  // (a pipe, a socket, a library), else a made-up one.
  std::tuple<int, uint64_t, uint64_t> PickDescriptor(int pid) {
    std::vector<std::tuple<int, uint64_t, uint64_t>> memfds, others;
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    if (DIR* d = opendir(dir.c_str())) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const std::string path = dir + "/" + e->d_name;
        struct stat st;
        char link[256] = {0};
        if (stat(path.c_str(), &st) != 0) continue;
        const ssize_t n = readlink(path.c_str(), link, sizeof(link) - 1);
        const bool memfd = n > 0 && std::strncmp(link, "/memfd:", 7) == 0;
        (memfd ? memfds : others)
            .emplace_back(std::atoi(e->d_name), static_cast<uint64_t>(st.st_ino),
                          std::max<uint64_t>(4096, static_cast<uint64_t>(st.st_size)));
      }
      closedir(d);
    }
    if (!memfds.empty() && Chance(0.8)) return memfds[Uniform(memfds.size())];
    if (!others.empty()) return others[Uniform(others.size())];
    return {static_cast<int>(Uniform(64)), Uniform(1u << 20), 4096};
  }

  // A well-formed Tessera message a stranger should never get applied.
  Parts Forged() {
    ++forged_;
    tessera::proto::Header h;
    SetNode(h.mutable_sender());
    // Request ids count up per node, a few per step: a forged reply may complete a pending one.
    h.set_request_id(Uniform(4 * static_cast<uint64_t>(o_.max_clock) + 64));
    h.set_clock(static_cast<int64_t>(Uniform(static_cast<uint64_t>(o_.max_clock) + 1)));
    h.set_dtype(tessera::proto::DTYPE_FLOAT32);
    h.set_shard_map_version(Uniform(3));
    Parts parts(1);
    std::string body;
    const int what = o_.forge_kinds[Uniform(o_.forge_kinds.size())];
    if (what <= 3) {
      // PUSH or PULL (or a reply to one) of real-looking keys: MF users and items, CTR hashes.
      const bool push = what <= 1;
      h.set_command(push ? tessera::proto::COMMAND_PUSH : tessera::proto::COMMAND_PULL);
      h.set_is_reply(what == 3);
      // Few keys (every key must belong to the receiving server) and the row sizes of the
      // usual models (MF: dim + 1; CTR: emb-dim, 1), else any.
      const size_t keys = Chance(0.5) ? 1 : 1 + Uniform(64);
      const size_t kRowFloats[] = {1, 8, 9, 16, 17, 32, 33, 64, 65};
      const size_t row_floats = Chance(0.8) ? kRowFloats[Uniform(9)] : 1 + Uniform(128);
      auto* t = h.add_tables();
      t->set_table_id(static_cast<uint32_t>(Uniform(Chance(0.9) ? 2 : 4)));
      t->set_num_keys(keys);
      std::string key_frame(keys * sizeof(uint64_t), '\0');
      for (size_t i = 0; i < keys; ++i) {
        const uint64_t key = Chance(0.8) ? Uniform(2000) : rng_();
        std::memcpy(&key_frame[i * sizeof(key)], &key, sizeof(key));
      }
      if (what != 3) parts.push_back(key_frame);
      if (what != 2) parts.push_back(HostileFloats(keys * row_floats));
    } else if (what == 4) {
      h.set_command(tessera::proto::COMMAND_ABORT);
      tessera::proto::AbortNotice abort;
      SetNode(abort.mutable_node());
      // Valid UTF-8 (protobuf checks strings) that a raw log would still misprint.
      abort.set_reason("forged abort \x1b[2J\x1b[31m\r\n\t\u202e by a stranger");
      abort.set_code(static_cast<int>(Uniform(20)));
      body = abort.SerializeAsString();
    } else if (what == 5) {
      h.set_command(tessera::proto::COMMAND_SIGNAL);
      tessera::proto::SignalNotice signal;
      signal.set_signal(Chance(0.5) ? SIGTERM : SIGUSR1);
      body = signal.SerializeAsString();
    } else if (what == 6) {
      const tessera::proto::Command commands[] = {
          tessera::proto::COMMAND_SHUTDOWN, tessera::proto::COMMAND_DONE,
          tessera::proto::COMMAND_HEARTBEAT, tessera::proto::COMMAND_ECHO};
      h.set_command(commands[Uniform(4)]);
      h.set_is_reply(Chance(0.3));
    } else if (what == 7) {
      h.set_command(tessera::proto::COMMAND_CHECKPOINT);
      h.set_is_reply(Chance(0.3));
      tessera::proto::CheckpointRequest request;
      request.set_step(h.clock());
      request.set_dir("/nonexistent/tessera-stranger/step-" + std::to_string(h.clock()) + ".tmp");
      request.set_final(Chance(0.5));
      body = request.SerializeAsString();
    } else if (what == 8) {
      h.set_command(Chance(0.5) ? tessera::proto::COMMAND_REGISTER
                                : tessera::proto::COMMAND_REDUCE);
      tessera::proto::RegisterRequest request;
      SetNode(request.mutable_node());
      request.set_endpoint("tcp://127.0.0.1:1");
      request.set_pid(4242);
      body = h.command() == tessera::proto::COMMAND_REGISTER ? request.SerializeAsString()
                                                             : RandomBytes(Uniform(64));
    } else if (what == 9) {
      h.set_command(tessera::proto::COMMAND_RELEASE);
      body = RandomBytes(8 * Uniform(8));
    } else {
      // A PUSH whose gradients "lie in the sender's shared memory": a descriptor naming an open
      // file of one of the job's processes (or of this one), with the inode and size a stranger
      // reads from /proc/PID/fd (memfd blocks preferred), any block id.
      h.set_command(tessera::proto::COMMAND_PUSH);
      const int pid = o_.pids.empty() || Chance(0.2) ? getpid() : o_.pids[Uniform(o_.pids.size())];
      h.set_sender_pid(pid);
      auto* t = h.add_tables();
      t->set_table_id(0);
      t->set_num_keys(1);
      parts.push_back(std::string(8, '\1'));
      parts.push_back(std::string());
      auto* d = h.add_shared_frames();
      d->set_frame_index(1);
      d->set_token(rng_());
      const auto [fd, inode, bytes] = PickDescriptor(pid);
      d->set_fd(fd);
      d->set_block_id(Uniform(8));
      d->set_inode(inode);
      d->set_block_bytes(bytes);
      d->set_offset(0);
      // One row of table 0 of the usual models (MF dim 32: 33 floats; CTR emb-dim 8, 16).
      const uint64_t kRowBytes[] = {33 * 4, 8 * 4, 9 * 4, 16 * 4, 17 * 4, 4};
      d->set_size(std::min<uint64_t>(bytes, kRowBytes[Uniform(6)]));
    }
    if (!body.empty() || h.command() == tessera::proto::COMMAND_RELEASE) parts.push_back(body);
    parts[0] = h.SerializeAsString();
    return parts;
  }

  // A hostile routing id: a node's name, or bytes with escapes, newlines and invalid UTF-8
  // (ZeroMQ refuses ids that start with a zero byte).
  std::string RoutingId() {
    if (Chance(o_.node_ids)) return Chance(0.5) ? "worker:0" : "scheduler:0";
    if (Chance(0.5)) return "\x1b[31mserver:0\n\xff\xfe" + RandomBytes(8);
    std::string id = RandomBytes(1 + Uniform(64));
    if (id[0] == '\0') id[0] = 'x';
    return id;
  }

  void Send(const std::string& endpoint, const Parts& parts) {
    const bool curve = Chance(o_.curve);
    auto& pool = sockets_[{endpoint, curve}];
    // A few connections per endpoint and mechanism; one in 32 sends replaces one (churn).
    if (pool.size() < 4 || Uniform(32) == 0) {
      auto socket = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
      socket->set(zmq::sockopt::linger, 0);
      socket->set(zmq::sockopt::sndhwm, 64);
      socket->set(zmq::sockopt::routing_id, RoutingId());
      if (curve) {
        char server_public[41], public_key[41], secret_key[41];
        zmq_curve_keypair(server_public, secret_key);  // a server key that is not the job's
        zmq_curve_keypair(public_key, secret_key);
        socket->set(zmq::sockopt::curve_serverkey, std::string(server_public));
        socket->set(zmq::sockopt::curve_publickey, std::string(public_key));
        socket->set(zmq::sockopt::curve_secretkey, std::string(secret_key));
      }
      socket->connect(endpoint);
      ++opened_;
      if (pool.size() < 4) {
        pool.push_back(std::move(socket));
      } else {
        pool[Uniform(pool.size())] = std::move(socket);
      }
    }
    zmq::socket_t& socket = *pool[Uniform(pool.size())];
    for (size_t i = 0; i < parts.size(); ++i) {
      const auto flags = i + 1 < parts.size() ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                              : zmq::send_flags::dontwait;
      if (!socket.send(zmq::buffer(parts[i]), flags)) {
        // The queue is full (the peer refused the handshake or is slow): a multipart message
        // is all or nothing, so only its first part can fail.
        ++full_;
        return;
      }
    }
    ++(curve ? queued_curve_ : queued_null_);
  }

  const Options o_;
  std::mt19937_64 rng_;
  zmq::context_t context_;
  std::map<std::pair<std::string, bool>, std::vector<std::unique_ptr<zmq::socket_t>>> sockets_;
  long long raw_ = 0, queued_null_ = 0, queued_curve_ = 0, full_ = 0, forged_ = 0, opened_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const Options options = Parse(argc, argv);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    Stranger(options).Run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tessera_stranger: %s\n", e.what());
    return 1;
  }
  return 0;
}

// tessera_stranger: a process that is not a member of a job and attacks its ports, for the
// authentication tests (tests/integration/auth_test.py) and the soak test.
//
//   tessera_stranger --ports P1,P2,... [--host 127.0.0.1] [--seconds S] [--pause-ms M]
//
// Until S seconds have passed, round after round, for every port: keeps a ZeroMQ DEALER with the
// NULL mechanism and one as a CURVE client with a random key pair and a random server key
// connected (both replaced every 25 rounds), and connects as a plain TCP client; through the two
// DEALERs it sends a forged PUSH
// (worker:0, clock 0, NaN gradients), a forged ABORT (from the scheduler), a forged shared-frame
// descriptor naming /proc/<its pid>/fd/0, and garbage; through the TCP socket raw garbage. Prints
// the number of rounds and exits 0. Seeded (fixed), so runs are comparable.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "proto/tessera.pb.h"

namespace {

// Never blocks: a socket whose queue is full (no handshake completed) just drops the message.
void SendParts(zmq::socket_t& s, const std::vector<std::string>& parts) {
  for (size_t i = 0; i < parts.size(); ++i) {
    const zmq::send_flags flags = i + 1 < parts.size()
                                      ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                      : zmq::send_flags::dontwait;
    if (!s.send(zmq::buffer(parts[i]), flags)) return;
  }
}

std::vector<std::vector<std::string>> ForgedMessages(std::mt19937_64& rng) {
  std::vector<std::vector<std::string>> out;
  tessera::proto::Header push;
  push.set_command(tessera::proto::COMMAND_PUSH);
  push.set_request_id(rng());
  push.mutable_sender()->set_role(tessera::proto::ROLE_WORKER);
  push.mutable_sender()->set_rank(0);
  push.set_clock(0);
  push.set_dtype(tessera::proto::DTYPE_FLOAT32);
  auto* t = push.add_tables();
  t->set_table_id(0);
  t->set_num_keys(2);
  std::vector<uint64_t> keys = {1, 2};
  std::vector<float> grads(2 * 65, std::nanf(""));
  out.push_back({push.SerializeAsString(),
                 std::string(reinterpret_cast<const char*>(keys.data()), 16),
                 std::string(reinterpret_cast<const char*>(grads.data()), grads.size() * 4)});

  tessera::proto::AbortNotice notice;
  notice.set_reason("forged abort \x1b[31m\xff");
  notice.set_code(10);
  tessera::proto::Header abort;
  abort.set_command(tessera::proto::COMMAND_ABORT);
  abort.set_request_id(rng());
  abort.mutable_sender()->set_role(tessera::proto::ROLE_SCHEDULER);
  out.push_back({abort.SerializeAsString(), notice.SerializeAsString()});

  tessera::proto::Header shared;
  shared.set_command(tessera::proto::COMMAND_ECHO);
  shared.mutable_sender()->set_role(tessera::proto::ROLE_WORKER);
  shared.set_sender_pid(static_cast<int>(getpid()));
  auto* d = shared.add_shared_frames();
  d->set_fd(0);
  d->set_block_bytes(4096);
  d->set_size(4096);
  out.push_back({shared.SerializeAsString(), std::string()});

  std::string garbage(1 + rng() % 512, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  out.push_back({garbage, garbage});
  return out;
}

void RawGarbage(const std::string& host, int port, std::mt19937_64& rng) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    std::string bytes(4096, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    (void)n;
  }
  close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  std::vector<int> ports;
  double seconds = 10;
  int pause_ms = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--host") {
      host = value;
    } else if (flag == "--seconds") {
      seconds = std::stod(value);
    } else if (flag == "--pause-ms") {
      pause_ms = std::stoi(value);
    } else if (flag == "--ports") {
      size_t begin = 0;
      while (begin < value.size()) {
        size_t end = value.find(',', begin);
        if (end == std::string::npos) end = value.size();
        ports.push_back(std::stoi(value.substr(begin, end - begin)));
        begin = end + 1;
      }
    } else {
      std::fprintf(stderr, "tessera_stranger: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (ports.empty()) {
    std::fprintf(stderr, "usage: tessera_stranger --ports P1,P2,... [--seconds S]\n");
    return 2;
  }
  std::mt19937_64 rng(2026);
  zmq::context_t ctx;
  // Sockets live for kRoundsPerSocket rounds: a DEALER queues what it is given until its
  // handshake completes, so a socket closed at once would deliver nothing even to an open door.
  constexpr long kRoundsPerSocket = 25;
  std::vector<zmq::socket_t> sockets;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long rounds = 0;
  while (std::chrono::steady_clock::now() < end) {
    if (rounds % kRoundsPerSocket == 0) {
      sockets.clear();
      for (int port : ports) {
        const std::string endpoint = "tcp://" + host + ":" + std::to_string(port);
        zmq::socket_t plain(ctx, zmq::socket_type::dealer);  // NULL mechanism
        plain.set(zmq::sockopt::linger, 0);
        plain.connect(endpoint);
        sockets.push_back(std::move(plain));
        zmq::socket_t curve(ctx, zmq::socket_type::dealer);
        curve.set(zmq::sockopt::linger, 0);
        char pub[41], sec[41], server_pub[41], server_sec[41];
        zmq_curve_keypair(pub, sec);
        zmq_curve_keypair(server_pub, server_sec);
        curve.set(zmq::sockopt::curve_serverkey, server_pub);
        curve.set(zmq::sockopt::curve_publickey, pub);
        curve.set(zmq::sockopt::curve_secretkey, sec);
        curve.connect(endpoint);
        sockets.push_back(std::move(curve));
      }
    }
    for (size_t p = 0; p < ports.size(); ++p) {
      for (const auto& message : ForgedMessages(rng)) {
        SendParts(sockets[2 * p], message);
        SendParts(sockets[2 * p + 1], message);
      }
      RawGarbage(host, ports[p], rng);
    }
    ++rounds;
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
  }
  sockets.clear();
  std::printf("tessera_stranger: %ld rounds against %zu port(s)\n", rounds, ports.size());
  return 0;
}

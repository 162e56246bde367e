#include "launch/job_security.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

#include <cstring>

#include "core/cluster.h"

namespace tessera::launch {

std::vector<NodeId> JobMembers(int servers, int workers) {
  std::vector<NodeId> members = {NodeId::Scheduler()};
  for (int r = 0; r < servers; ++r) members.push_back(NodeId::Server(r));
  for (int r = 0; r < workers; ++r) members.push_back(NodeId::Worker(r));
  return members;
}

StatusOr<std::optional<auth::JobSecret>> JobSecretInProcess(const TrainOptions& o) {
  if (o.insecure) return std::optional<auth::JobSecret>();
  if (!o.auth_key_path.empty()) {
    TS_ASSIGN_OR_RETURN(auth::JobSecret secret, auth::ReadKeyFile(o.auth_key_path));
    return std::optional<auth::JobSecret>(secret);
  }
  TS_ASSIGN_OR_RETURN(auth::JobSecret secret, auth::GenerateSecret());
  return std::optional<auth::JobSecret>(secret);
}

StatusOr<std::optional<auth::JobSecret>> ShareJobSecret(const TrainOptions& o, int rank,
                                                        bool one_host) {
  if (o.insecure) {
    if (!one_host) {
      return Status::InvalidArgument(
          "--insecure is allowed only when every process runs on one host (the job listens on "
          "loopback then); this job spans hosts: drop --insecure");
    }
    return std::optional<auth::JobSecret>();
  }
  // [0]: 1 when rank 0 has a secret; [1..32]: the secret.
  unsigned char buffer[1 + auth::kKeyBytes] = {0};
  Status status = OkStatus();
  if (rank == 0) {
    StatusOr<auth::JobSecret> secret =
        o.auth_key_path.empty() ? auth::GenerateSecret() : auth::ReadKeyFile(o.auth_key_path);
    if (secret.ok()) {
      buffer[0] = 1;
      std::memcpy(buffer + 1, secret->bytes.data(), auth::kKeyBytes);
      explicit_bzero(secret->bytes.data(), auth::kKeyBytes);
    } else {
      status = secret.status();
    }
  }
  MPI_Bcast(buffer, sizeof(buffer), MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
  if (buffer[0] != 1) {
    if (rank == 0) return status;
    return Status::FailedPrecondition("rank 0 could not load the job secret");
  }
  auth::JobSecret secret;
  std::memcpy(secret.bytes.data(), buffer + 1, auth::kKeyBytes);
  explicit_bzero(buffer, sizeof(buffer));
  return std::optional<auth::JobSecret>(secret);
}

std::vector<int> GatherPids(int size) {
  int mine = static_cast<int>(getpid());
  std::vector<int> pids(static_cast<size_t>(size));
  MPI_Allgather(&mine, 1, MPI_INT, pids.data(), 1, MPI_INT, MPI_COMM_WORLD);
  return pids;
}

StatusOr<std::string> ListenAddress(bool one_host) {
  if (one_host) return std::string("127.0.0.1");
  const std::string host = HostName();
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0) {
    return Status::FailedPrecondition(
        "cannot resolve this host's name " + host +
        " to an address the job's other hosts can reach: " + gai_strerror(rc));
  }
  std::string address, loopback;
  for (addrinfo* a = found; a != nullptr && address.empty(); a = a->ai_next) {
    char text[INET_ADDRSTRLEN] = {0};
    const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == nullptr) continue;
    // 127.0.0.0/8 (Debian maps the host name to 127.0.1.1) is not reachable from other hosts.
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) {
      loopback = text;
    } else {
      address = text;
    }
  }
  freeaddrinfo(found);
  if (address.empty()) {
    return Status::FailedPrecondition(
        "this host's name " + host + " resolves only to the loopback address " + loopback +
        ", which the job's other hosts cannot reach: map it to the host's network address "
        "(/etc/hosts or DNS)");
  }
  return address;
}

}  // namespace tessera::launch

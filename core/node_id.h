// NodeId: who a node is, as {Role, rank within the role}. No magic numeric identities.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "core/status.h"
#include "proto/tessera.pb.h"

namespace tessera {

enum class Role { kScheduler, kServer, kWorker };

const char* RoleName(Role role);

struct NodeId {
  Role role = Role::kScheduler;
  int rank = 0;

  static NodeId Scheduler() { return {Role::kScheduler, 0}; }
  static NodeId Server(int rank) { return {Role::kServer, rank}; }
  static NodeId Worker(int rank) { return {Role::kWorker, rank}; }

  // "scheduler:0", "server:2", "worker:1": also the log tag and the ZeroMQ routing id.
  std::string ToString() const;
  proto::NodeIdProto ToProto() const;
  static StatusOr<NodeId> FromProto(const proto::NodeIdProto& p);

  friend bool operator==(const NodeId& a, const NodeId& b) {
    return a.role == b.role && a.rank == b.rank;
  }
  friend bool operator!=(const NodeId& a, const NodeId& b) { return !(a == b); }
  friend bool operator<(const NodeId& a, const NodeId& b) {
    return a.role != b.role ? a.role < b.role : a.rank < b.rank;
  }
};

struct NodeIdHash {
  size_t operator()(const NodeId& id) const {
    return std::hash<int>()(static_cast<int>(id.role) * 1000003 + id.rank);
  }
};

}  // namespace tessera

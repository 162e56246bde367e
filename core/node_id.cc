#include "core/node_id.h"

namespace tessera {

const char* RoleName(Role role) {
  switch (role) {
    case Role::kScheduler:
      return "scheduler";
    case Role::kServer:
      return "server";
    case Role::kWorker:
      return "worker";
  }
  return "unknown";
}

std::string NodeId::ToString() const {
  return std::string(RoleName(role)) + ":" + std::to_string(rank);
}

proto::NodeIdProto NodeId::ToProto() const {
  proto::NodeIdProto p;
  switch (role) {
    case Role::kScheduler:
      p.set_role(proto::ROLE_SCHEDULER);
      break;
    case Role::kServer:
      p.set_role(proto::ROLE_SERVER);
      break;
    case Role::kWorker:
      p.set_role(proto::ROLE_WORKER);
      break;
  }
  p.set_rank(rank);
  return p;
}

StatusOr<NodeId> NodeId::FromProto(const proto::NodeIdProto& p) {
  NodeId id;
  switch (p.role()) {
    case proto::ROLE_SCHEDULER:
      id.role = Role::kScheduler;
      break;
    case proto::ROLE_SERVER:
      id.role = Role::kServer;
      break;
    case proto::ROLE_WORKER:
      id.role = Role::kWorker;
      break;
    default:
      return Status::InvalidArgument("node id has no role");
  }
  if (p.rank() < 0) return Status::InvalidArgument("node id has a negative rank");
  id.rank = p.rank();
  return id;
}

}  // namespace tessera

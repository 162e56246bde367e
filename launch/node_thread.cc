#include "launch/node_thread.h"

#include <system_error>
#include <utility>

#include "core/cluster.h"

namespace tessera::launch {
namespace {

Status ThreadStartFailure(RpcNode* rpc, const std::system_error& e) {
  const Status failure = Status::FailedPrecondition(
      std::string("cannot start a thread (") + e.what() +
      "): the process is at its thread or memory limit (ulimit -u, ulimit -v); run fewer "
      "--workers or --servers, or raise the limit");
  ReportFailure(rpc, failure);
  return failure;
}

}  // namespace

Status StartNodeThread(std::vector<std::thread>* threads, RpcNode* rpc,
                       std::function<void()> body) {
  try {
    threads->emplace_back(std::move(body));
  } catch (const std::system_error& e) {
    return ThreadStartFailure(rpc, e);
  }
  return OkStatus();
}

Status RunNode(RpcNode* rpc, const std::function<Status()>& role) {
  try {
    return role();
  } catch (const std::system_error& e) {
    return ThreadStartFailure(rpc, e);
  }
}

}  // namespace tessera::launch

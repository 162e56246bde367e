#include "launch/node_thread.h"

#include <system_error>
#include <utility>

#include "core/cluster.h"

namespace tessera::launch {
namespace {

Status ThreadStartFailure(const std::system_error& e) {
  return Status::FailedPrecondition(
      std::string("cannot start a thread (") + e.what() +
      "): the process is at its thread or memory limit (ulimit -u, ulimit -v); run fewer "
      "--workers or --servers, or raise the limit");
}

}  // namespace

Status StartNodeThread(std::vector<std::thread>* threads, RpcNode* rpc,
                       std::function<void()> body) {
  try {
    threads->emplace_back(std::move(body));
  } catch (const std::system_error& e) {
    // The node's transport is not started (its thread starts it), so it cannot report.
    return ThreadStartFailure(e).WithContext(rpc->self().ToString());
  }
  return OkStatus();
}

Status RunNode(RpcNode* rpc, const std::function<Status()>& role) {
  try {
    return role();
  } catch (const std::system_error& e) {
    const Status failure = ThreadStartFailure(e);
    ReportFailure(rpc, failure);
    return failure;
  }
}

}  // namespace tessera::launch

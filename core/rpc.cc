#include "core/rpc.h"

#include "core/escape.h"
#include "core/logging.h"

namespace tessera {

Status StatusFromHeader(const proto::Header& header) {
  if (header.status_code() == 0) return OkStatus();
  return Status(static_cast<StatusCode>(header.status_code()), header.status_message());
}

RpcNode::RpcNode(Transport* transport) : transport_(transport) {}

RpcNode::~RpcNode() { Stop(); }

Status RpcNode::Start(RequestHandler handler) {
  handler_ = std::move(handler);
  return transport_->Start([this](Message&& m) { Dispatch(std::move(m)); });
}

void RpcNode::Stop() {
  transport_->Stop();
  std::unordered_map<uint64_t, std::promise<StatusOr<Message>>> pending;
  {
    MutexLock lock(&mu_);
    stopped_ = true;
    pending.swap(pending_);
  }
  for (auto& [id, promise] : pending) {
    promise.set_value(Status::Cancelled(transport_->self().ToString() + " stopped"));
  }
}

void RpcNode::FailPending(const Status& status) {
  std::unordered_map<uint64_t, std::promise<StatusOr<Message>>> pending;
  {
    MutexLock lock(&mu_);
    pending.swap(pending_);
  }
  for (auto& [id, promise] : pending) promise.set_value(status);
}

void RpcNode::Poison(const Status& status) {
  {
    MutexLock lock(&mu_);
    if (poisoned_.ok()) poisoned_ = status;
    poisoned_cv_.SignalAll();
  }
  FailPending(status);
}

Status RpcNode::WaitPoisoned(std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  poisoned_cv_.WaitFor(&mu_, timeout, [&]() TS_REQUIRES(mu_) { return !poisoned_.ok(); });
  return poisoned_;
}

void RpcNode::Dispatch(Message&& message) {
  if (!message.header.is_reply()) {
    if (handler_) handler_(std::move(message));
    return;
  }
  std::promise<StatusOr<Message>> promise;
  {
    MutexLock lock(&mu_);
    auto it = pending_.find(message.header.request_id());
    if (it == pending_.end()) {
      TS_LOG(WARNING) << "dropped a reply nobody waits for: " << message.DebugString();
      return;
    }
    promise = std::move(it->second);
    pending_.erase(it);
  }
  Status status = StatusFromHeader(message.header);
  if (status.ok()) {
    promise.set_value(std::move(message));
  } else {
    promise.set_value(status);
  }
}

std::future<StatusOr<Message>> RpcNode::Call(const NodeId& to, Message request) {
  const uint64_t id = next_request_id_.fetch_add(1);
  request.header.set_request_id(id);
  request.header.set_is_reply(false);
  std::future<StatusOr<Message>> future;
  {
    MutexLock lock(&mu_);
    if (stopped_ || !poisoned_.ok()) {
      std::promise<StatusOr<Message>> failed;
      failed.set_value(stopped_ ? Status::Cancelled(transport_->self().ToString() + " stopped")
                                : poisoned_);
      return failed.get_future();
    }
    future = pending_[id].get_future();
  }
  Status sent = transport_->Send(to, std::move(request));
  if (!sent.ok()) {
    MutexLock lock(&mu_);
    auto it = pending_.find(id);
    // The in-process transport may already have delivered a reply; only fail a still-pending call.
    if (it != pending_.end()) {
      it->second.set_value(sent);
      pending_.erase(it);
    }
  }
  return future;
}

StatusOr<Message> RpcNode::Wait(std::future<StatusOr<Message>>& reply,
                                std::chrono::milliseconds timeout, const std::string& what) {
  if (reply.wait_for(timeout) != std::future_status::ready) {
    return Status::DeadlineExceeded(what + ": no reply within " + std::to_string(timeout.count()) +
                                    " ms");
  }
  return reply.get();
}

StatusOr<Message> RpcNode::CallAndWait(const NodeId& to, Message request,
                                       std::chrono::milliseconds timeout) {
  std::string what = proto::Command_Name(request.header.command()) + " to " + to.ToString();
  auto future = Call(to, std::move(request));
  auto reply = Wait(future, timeout, what);
  if (!reply.ok()) return reply.status().WithContext(what);
  return reply;
}

Status RpcNode::Reply(const Message& request, Message reply) {
  TS_ASSIGN_OR_RETURN(NodeId to, NodeId::FromProto(request.header.sender()));
  reply.header.set_command(request.header.command());
  reply.header.set_request_id(request.header.request_id());
  reply.header.set_is_reply(true);
  return transport_->Send(to, std::move(reply));
}

Status RpcNode::ReplyError(const Message& request, const Status& status) {
  Message reply;
  reply.header.set_status_code(static_cast<int>(status.code()));
  reply.header.set_status_message(EscapeUntrusted(status.message()));
  return Reply(request, std::move(reply));
}

Status RpcNode::Send(const NodeId& to, Message message) {
  message.header.set_is_reply(false);
  return transport_->Send(to, std::move(message));
}

}  // namespace tessera

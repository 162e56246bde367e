#include "core/inproc_transport.h"

#include "core/logging.h"

namespace tessera {

Status InProcHub::Register(const NodeId& id, std::shared_ptr<Receiver> receiver) {
  MutexLock lock(&mu_);
  if (!nodes_.emplace(id, std::move(receiver)).second) {
    return Status::AlreadyExists(id.ToString() + " is already registered in this process");
  }
  return OkStatus();
}

void InProcHub::Unregister(const NodeId& id) {
  std::shared_ptr<Receiver> receiver;
  {
    MutexLock lock(&mu_);
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return;
    receiver = std::move(it->second);
    nodes_.erase(it);
  }
  MutexLock lock(&receiver->mu);
  receiver->open = false;
  receiver->idle.Wait(&receiver->mu,
                      [&]() TS_REQUIRES(receiver->mu) { return receiver->active == 0; });
}

Status InProcHub::Deliver(const NodeId& to, Message&& message) {
  std::shared_ptr<Receiver> receiver;
  {
    MutexLock lock(&mu_);
    auto it = nodes_.find(to);
    if (it != nodes_.end()) receiver = it->second;
  }
  if (receiver == nullptr) return Status::Unavailable(to.ToString() + " is not running");
  {
    MutexLock lock(&receiver->mu);
    if (!receiver->open) return Status::Unavailable(to.ToString() + " has stopped");
    ++receiver->active;
  }
  // No lock is held while the handler runs, so it may itself send (e.g. reply) freely. Its log
  // lines carry the receiving node's tag, not the sender's whose thread this is.
  const std::string sender_tag = logging::ThreadLogTag();
  logging::SetThreadLogTag(receiver->tag);
  receiver->handler(std::move(message));
  logging::SetThreadLogTag(sender_tag);
  {
    MutexLock lock(&receiver->mu);
    if (--receiver->active == 0) receiver->idle.SignalAll();
  }
  return OkStatus();
}

InProcTransport::InProcTransport(InProcHub* hub, NodeId self) : hub_(hub), self_(self) {}

InProcTransport::~InProcTransport() { Stop(); }

Status InProcTransport::Start(MessageHandler handler) {
  MutexLock lock(&mu_);
  if (started_) return Status::FailedPrecondition("transport already started");
  auto receiver = std::make_shared<InProcHub::Receiver>();
  receiver->handler = std::move(handler);
  receiver->tag = self_.ToString();
  TS_RETURN_IF_ERROR(hub_->Register(self_, std::move(receiver)));
  started_ = true;
  return OkStatus();
}

Status InProcTransport::Send(const NodeId& to, Message message) {
  {
    MutexLock lock(&mu_);
    if (!started_) return Status::Unavailable(self_.ToString() + " transport is stopped");
  }
  *message.header.mutable_sender() = self_.ToProto();
  return hub_->Deliver(to, std::move(message));
}

void InProcTransport::Stop() {
  MutexLock lock(&mu_);
  if (!started_) return;
  hub_->Unregister(self_);
  started_ = false;
}

}  // namespace tessera

// In-process transport: the nodes of `tessera train` (threads of one process) and unit tests.
// An InProcHub is the shared switchboard; each node's InProcTransport registers with it.
// Send() calls the receiver's handler on the sender's thread: no queue, no copy.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>

#include "core/transport.h"

namespace tessera {

// Thread-safe. Must outlive every transport registered with it.
class InProcHub {
 public:
  InProcHub() = default;
  InProcHub(const InProcHub&) = delete;
  InProcHub& operator=(const InProcHub&) = delete;

  // One registered node's handler, and how many deliveries are running in it.
  struct Receiver {
    MessageHandler handler;
    std::string tag;  // log tag of the node while its handler runs
    std::mutex mu;
    std::condition_variable idle;
    int active = 0;    // GUARDED_BY(mu)
    bool open = true;  // GUARDED_BY(mu)
  };

  Status Register(const NodeId& id, std::shared_ptr<Receiver> receiver);
  // Removes `id`; returns once no delivery to it is running any more. Must not be called from
  // inside that node's own handler.
  void Unregister(const NodeId& id);
  // Calls the handler of `to` on this thread; kUnavailable if it is not registered.
  Status Deliver(const NodeId& to, Message&& message);

 private:
  std::mutex mu_;
  std::map<NodeId, std::shared_ptr<Receiver>> nodes_;  // GUARDED_BY(mu_)
};

class InProcTransport : public Transport {
 public:
  InProcTransport(InProcHub* hub, NodeId self);
  ~InProcTransport() override;

  const NodeId& self() const override { return self_; }
  std::string endpoint() const override { return ""; }
  Status AddPeer(const NodeId&, const std::string&) override { return OkStatus(); }
  Status Start(MessageHandler handler) override;
  Status Send(const NodeId& to, Message message) override;
  void Stop() override;

 private:
  InProcHub* hub_;
  NodeId self_;
  std::mutex mu_;
  bool started_ = false;  // GUARDED_BY(mu_)
};

}  // namespace tessera

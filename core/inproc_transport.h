// In-process transport: the nodes of `tessera train` (threads of one process) and unit tests.
// An InProcHub is the shared switchboard; each node's InProcTransport registers with it.
// Send() calls the receiver's handler on the sender's thread: no queue, no copy.
#pragma once

#include <map>
#include <memory>

#include "core/mutex.h"
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
    Mutex mu;
    CondVar idle;
    int active TS_GUARDED_BY(mu) = 0;
    bool open TS_GUARDED_BY(mu) = true;
  };

  Status Register(const NodeId& id, std::shared_ptr<Receiver> receiver) TS_EXCLUDES(mu_);
  // Removes `id`; returns once no delivery to it is running any more. Must not be called from
  // inside that node's own handler.
  void Unregister(const NodeId& id) TS_EXCLUDES(mu_);
  // Calls the handler of `to` on this thread; kUnavailable if it is not registered.
  Status Deliver(const NodeId& to, Message&& message) TS_EXCLUDES(mu_);

 private:
  Mutex mu_;
  std::map<NodeId, std::shared_ptr<Receiver>> nodes_ TS_GUARDED_BY(mu_);
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
  Mutex mu_;
  bool started_ TS_GUARDED_BY(mu_) = false;
};

}  // namespace tessera

// Transport: moves Messages between nodes. Two implementations behind one interface:
//   InProcTransport  - nodes that are threads of one process; Messages are handed over as they
//                      are (no encoding, no copy of frames).
//   ZmqTransport     - one ROUTER socket bound per node, DEALER sockets to peers, all owned by
//                      one I/O thread; application threads hand messages to it through a queue.
// Ownership: whoever constructs a Transport owns it; roles borrow it by reference.
#pragma once

#include <functional>
#include <string>

#include "core/message.h"
#include "core/node_id.h"
#include "core/status.h"

namespace tessera {

// Receives every incoming message. Called on a transport-owned delivery thread (ZeroMQ: the I/O
// thread; in-process: the sending thread), possibly from several threads at once: it must be
// thread-safe and must not block for long.
using MessageHandler = std::function<void(Message&& message)>;

class Transport {
 public:
  virtual ~Transport() = default;

  virtual const NodeId& self() const = 0;
  // Where peers reach this node ("tcp://127.0.0.1:41234"; "" for in-process).
  virtual std::string endpoint() const = 0;
  // Tells the transport where `peer` listens. Thread-safe. Needed before Send to that peer.
  virtual Status AddPeer(const NodeId& peer, const std::string& endpoint) = 0;
  // Starts delivering incoming messages to `handler`.
  virtual Status Start(MessageHandler handler) = 0;
  // Queues `message` for `to`; the header's sender is set to self(). Thread-safe. Returns
  // kUnavailable if the peer is unknown or the transport is stopped. Delivery is asynchronous.
  virtual Status Send(const NodeId& to, Message message) = 0;
  // Stops delivery; once it returns the handler is not called again. Idempotent.
  virtual void Stop() = 0;
};

}  // namespace tessera

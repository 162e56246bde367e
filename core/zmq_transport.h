// ZeroMQ transport: one ROUTER socket bound per node (everything a node receives arrives there)
// and one DEALER per peer it sends to. All sockets belong to a single I/O thread; application
// threads hand outgoing messages to it through a queue and wake it with an eventfd.
//
// Wire form of a Message: [routing id added by ZeroMQ] [Header, protobuf] [frame 1] ... [frame n].
// Frames of at least `zero_copy_bytes` are sent without copying (ZeroMQ keeps a reference to
// the Frame's owner until the kernel has taken the bytes); received frames are wrapped, not copied.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <zmq.hpp>

#include "core/transport.h"

namespace tessera {

struct ZmqTransportOptions {
  std::string bind_host = "127.0.0.1";  // interface the ROUTER binds to
  int port = 0;                         // 0: an ephemeral port
  size_t zero_copy_bytes = 4096;        // frames at least this large are sent without a copy
  int linger_ms = 2000;                 // how long Stop() may wait to flush queued messages
};

class ZmqTransport : public Transport {
 public:
  // Binds the ROUTER (so endpoint() is known at once) but delivers nothing until Start().
  static StatusOr<std::unique_ptr<ZmqTransport>> Create(NodeId self,
                                                        const ZmqTransportOptions& options);
  ~ZmqTransport() override;

  const NodeId& self() const override { return self_; }
  std::string endpoint() const override { return endpoint_; }
  Status AddPeer(const NodeId& peer, const std::string& endpoint) override;
  Status Start(MessageHandler handler) override;
  Status Send(const NodeId& to, Message message) override;
  void Stop() override;

  // Messages or frames that failed to decode since start (they are logged and dropped).
  int64_t malformed_messages() const { return malformed_.load(); }

 private:
  struct Outgoing {
    NodeId to;
    Message message;
  };

  ZmqTransport(NodeId self, const ZmqTransportOptions& options);
  void IoLoop();
  void ReceiveAll();
  void SendOne(Outgoing& out);
  zmq::socket_t* DealerFor(const NodeId& to);

  const NodeId self_;
  const ZmqTransportOptions options_;
  zmq::context_t context_;
  zmq::socket_t router_;  // I/O thread only (after Start)
  std::string endpoint_;
  int wake_fd_ = -1;
  MessageHandler handler_;
  std::thread io_thread_;

  std::mutex mu_;
  std::deque<Outgoing> outbox_;              // GUARDED_BY(mu_)
  std::map<NodeId, std::string> peers_;      // GUARDED_BY(mu_)
  bool started_ = false;                     // GUARDED_BY(mu_)
  bool stopping_ = false;                    // GUARDED_BY(mu_)
  std::map<NodeId, zmq::socket_t> dealers_;  // I/O thread only
  std::atomic<int64_t> malformed_{0};
};

}  // namespace tessera

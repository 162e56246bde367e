// ZeroMQ transport: one ROUTER socket bound per node (everything a node receives arrives there)
// and one DEALER per peer it sends to. All sockets belong to a single I/O thread; application
// threads hand outgoing messages to it through a queue and wake it with an eventfd.
//
// Wire form of a Message: [routing id added by ZeroMQ] [Header, protobuf] [frame 1] ... [frame n].
// Frames of at least `zero_copy_bytes` are sent without copying (ZeroMQ keeps a reference to
// the Frame's owner until the kernel has taken the bytes); received frames are wrapped, not copied.
//
// With `shared_memory`, frames in this process's shared blocks (core/shared_frames.h) go as
// descriptors: the wire frame is empty and Header.shared_frames says where the bytes are. The
// receiving transport maps them, strips the descriptors, and tells the sender (COMMAND_RELEASE)
// when its handler has dropped the last reference. Only for peers on the same host; a receiver
// maps descriptors whatever its own option says.
//
// Authentication (with `secret`, the default of every multi-process job): the ROUTER is a CURVE
// server and every DEALER a CURVE client; key pairs derive from the job secret and the NodeId
// (core/auth.h). The transport's ZAP handler (a REP socket on inproc://zeromq.zap.01 of its own
// context, served by the I/O thread) admits exactly the public keys of `members` and names each
// connection by that member's NodeId (the ZAP User-Id); anything else is refused (status 400) and
// counted in auth_failures(). Without a secret (--insecure) peers greet with the NULL mechanism
// and a connection is named by the routing id its peer chose. Either way, a message whose
// Header.sender is not its connection's name is dropped and counted in refused_messages(), and
// shared-frame descriptors are mapped only when Header.sender_pid is the pid SetPeerPid gave for
// that (authenticated) sender, and the block is a Tessera memfd of the stated inode and size.
// Untrusted strings (routing ids, claimed senders, ZAP addresses) are escaped before a log.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "core/auth.h"
#include "core/mutex.h"
#include "core/shared_frames.h"
#include "core/transport.h"

namespace tessera {

struct ZmqTransportOptions {
  std::string bind_host = "127.0.0.1";  // interface the ROUTER binds to
  int port = 0;                         // 0: an ephemeral port
  size_t zero_copy_bytes = 4096;        // frames at least this large are sent without a copy
  int linger_ms = 2000;                 // how long Stop() may wait to flush queued messages
  bool shared_memory = false;           // send frames in shared blocks by descriptor (one host)
  size_t shared_min_bytes = 64 << 10;   // ... when they are at least this large
  size_t mapping_cache_bytes = size_t{1} << 30;  // peers' blocks kept mapped for reuse
  // CURVE: the job secret (nullopt: the NULL mechanism, no authentication) and the nodes the
  // ZAP handler admits (their public keys derive from the secret). Must list every peer.
  std::optional<auth::JobSecret> secret;
  std::vector<NodeId> members;
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
  // The process id of `peer` when it runs on this host (known from start-up, not from a
  // message): shared-frame descriptors from `peer` must name it. Descriptors from a peer without
  // one are refused. Thread-safe.
  void SetPeerPid(const NodeId& peer, int pid);
  Status Start(MessageHandler handler) override;
  Status Send(const NodeId& to, Message message) override;
  void Stop() override;

  // Messages or frames that failed to decode since start (they are logged and dropped).
  int64_t malformed_messages() const { return malformed_.load(); }
  // Connections the ZAP handler refused (unknown key, wrong mechanism) since creation.
  int64_t auth_failures() const { return auth_failures_.load(); }
  // Messages dropped because their Header.sender is not their connection's authenticated name,
  // or because a shared-frame descriptor was not one of the sender's blocks (not in
  // malformed_messages()).
  int64_t refused_messages() const { return refused_.load(); }
  // Frames sent / received as shared-memory descriptors since start, and frames sent that way
  // whose receiver has not released them yet.
  int64_t shared_frames_sent() const { return shared_sent_.load(); }
  int64_t shared_frames_received() const { return shared_received_.load(); }
  int64_t shared_frames_held() const { return held_count_.load(); }

 private:
  struct Outgoing {
    NodeId to;
    Message message;
  };

  // Tokens of received shared frames whose last reference is gone, per sender; filled by frame
  // deleters on any thread, drained by the I/O thread (woken through wake_fd).
  struct ReleaseQueue {
    Mutex mu;
    bool closed TS_GUARDED_BY(mu) = false;
    int wake_fd TS_GUARDED_BY(mu) = -1;
    std::map<NodeId, std::vector<uint64_t>> tokens TS_GUARDED_BY(mu);
    void Push(const NodeId& sender, uint64_t token) TS_EXCLUDES(mu);
  };

  ZmqTransport(NodeId self, const ZmqTransportOptions& options);
  void IoLoop();
  void ReceiveAll();
  // Answers one ZAP request (I/O thread).
  void ServeZap();
  // Whether `parts` (routing id, header, ...) came from the node its header names; logs the
  // first refusal per routing id.
  bool SenderMatchesConnection(const std::vector<zmq::message_t>& parts,
                               const proto::Header& header);
  void SendOne(Outgoing& out);
  // Replaces the empty frames that Header.shared_frames names with mappings of the sender's
  // blocks. On error nothing is mapped and every token goes back to the sender.
  Status MapSharedFrames(Message* message);
  void HandleRelease(const NodeId& from, const std::vector<zmq::message_t>& parts);
  void SendReleases() TS_EXCLUDES(mu_, releases_->mu);
  zmq::socket_t* DealerFor(const NodeId& to) TS_EXCLUDES(mu_);

  const NodeId self_;
  const ZmqTransportOptions options_;
  zmq::context_t context_;
  zmq::socket_t zap_;     // ZAP handler (REP; CURVE only); I/O thread only (after Start)
  zmq::socket_t router_;  // I/O thread only (after Start)
  std::optional<auth::KeyPair> keys_;          // this node's CURVE key pair (CURVE only)
  std::map<std::string, NodeId> member_keys_;  // public key (32 bytes) -> member
  std::set<std::string> logged_refusals_;      // I/O thread only: routing ids / addresses
  std::string endpoint_;
  int wake_fd_ = -1;
  MessageHandler handler_;
  std::thread io_thread_;

  Mutex mu_;
  std::deque<Outgoing> outbox_ TS_GUARDED_BY(mu_);
  std::map<NodeId, std::string> peers_ TS_GUARDED_BY(mu_);
  bool started_ TS_GUARDED_BY(mu_) = false;
  bool stopping_ TS_GUARDED_BY(mu_) = false;
  std::map<NodeId, zmq::socket_t> dealers_;  // I/O thread only
  std::map<NodeId, int> peer_pids_ TS_GUARDED_BY(mu_);
  std::atomic<int64_t> malformed_{0}, auth_failures_{0}, refused_{0};

  const int pid_;
  std::shared_ptr<ReleaseQueue> releases_;
  std::unordered_map<uint64_t, std::shared_ptr<const void>> held_;  // I/O thread only
  uint64_t next_token_ = 1;                                         // I/O thread only
  shared_frames::MappingCache mappings_;                            // I/O thread only
  std::atomic<int64_t> shared_sent_{0}, shared_received_{0}, held_count_{0};
};

}  // namespace tessera

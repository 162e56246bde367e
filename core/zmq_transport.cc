#include "core/zmq_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "core/escape.h"
#include "core/logging.h"

namespace tessera {
namespace {

// Releases the reference ZeroMQ held on a zero-copy frame (called on a ZeroMQ thread).
void ReleaseFrame(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

// A received shared frame: keeps the mapping alive and, when the handler drops the last
// reference, queues the token for the sender.
struct SharedFrameRef {
  SharedFrameRef(std::shared_ptr<const shared_frames::Mapping> m, std::shared_ptr<void> q,
                 void (*r)(void*, const NodeId&, uint64_t), NodeId s, uint64_t t)
      : mapping(std::move(m)), queue_owner(std::move(q)), release(r), sender(s), token(t) {}
  SharedFrameRef(const SharedFrameRef&) = delete;
  SharedFrameRef& operator=(const SharedFrameRef&) = delete;
  std::shared_ptr<const shared_frames::Mapping> mapping;
  std::shared_ptr<void> queue_owner;  // the ReleaseQueue, type-erased (private to the transport)
  void (*release)(void* queue, const NodeId& sender, uint64_t token);
  NodeId sender;
  uint64_t token;
  ~SharedFrameRef() { release(queue_owner.get(), sender, token); }
};

// At most this many routing ids / addresses are remembered for log-once (a flood of fresh ids
// is counted, not logged).
constexpr size_t kMaxLoggedRefusals = 256;

std::string KeyBytes(const auth::Key& key) {
  return std::string(reinterpret_cast<const char*>(key.data()), key.size());
}

void SetKey(zmq::socket_t& socket, int option, const auth::Key& key) {
  if (zmq_setsockopt(socket.handle(), option, key.data(), key.size()) != 0) throw zmq::error_t();
}

}  // namespace

void ZmqTransport::ReleaseQueue::Push(const NodeId& sender, uint64_t token) {
  MutexLock lock(&mu);
  if (closed) return;  // the transport stopped; the sender's blocks went with it
  tokens[sender].push_back(token);
  uint64_t one = 1;
  ssize_t n = write(wake_fd, &one, sizeof(one));
  (void)n;
}

ZmqTransport::ZmqTransport(NodeId self, const ZmqTransportOptions& options)
    : self_(self),
      options_(options),
      context_(1),
      router_(context_, zmq::socket_type::router),
      pid_(static_cast<int>(getpid())),
      releases_(std::make_shared<ReleaseQueue>()),
      mappings_(options.mapping_cache_bytes) {}

StatusOr<std::unique_ptr<ZmqTransport>> ZmqTransport::Create(NodeId self,
                                                             const ZmqTransportOptions& options) {
  std::unique_ptr<ZmqTransport> t(new ZmqTransport(self, options));
  try {
    if (options.secret) {
      // The ZAP handler must be bound before the ROUTER accepts its first connection.
      t->keys_ = auth::NodeKeyPair(*options.secret, self);
      for (const NodeId& member : options.members) {
        t->member_keys_[KeyBytes(auth::NodeKeyPair(*options.secret, member).public_key)] = member;
      }
      t->zap_ = zmq::socket_t(t->context_, zmq::socket_type::rep);
      t->zap_.set(zmq::sockopt::linger, 0);
      t->zap_.bind("inproc://zeromq.zap.01");
      t->router_.set(zmq::sockopt::curve_server, true);
      SetKey(t->router_, ZMQ_CURVE_SECRETKEY, t->keys_->secret_key);
      t->router_.set(zmq::sockopt::zap_domain, "tessera");
    }
    // A connection that has not completed its handshake within 10 s is closed (members take
    // milliseconds), so silent connections from strangers do not pile up.
    t->router_.set(zmq::sockopt::handshake_ivl, 10000);
    // Failed handshakes are counted (the I/O thread drains the monitor); events past the
    // monitor's queue are dropped, never waited for.
    const char* kMonitor = "inproc://tessera.router.monitor";  // one per context
    if (zmq_socket_monitor(t->router_.handle(), kMonitor,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
      throw zmq::error_t();
    }
    t->monitor_ = zmq::socket_t(t->context_, zmq::socket_type::pair);
    t->monitor_.set(zmq::sockopt::linger, 0);
    t->monitor_.connect(kMonitor);
    t->router_.set(zmq::sockopt::rcvhwm, 0);
    t->router_.set(zmq::sockopt::sndhwm, 0);
    t->router_.set(zmq::sockopt::linger, 0);
    // A second connection with a routing id already in use (a peer's reconnect racing the old
    // connection's close, or an --insecure stranger claiming a member's id) takes the id over.
    // Without this libzmq leaves the newcomer's pipe unread and, with no receive limit, its
    // messages pile up for good (docs/RELIABILITY.md). The ROUTER only receives, so nothing
    // addressed to the old connection is lost.
    t->router_.set(zmq::sockopt::router_handover, true);
    std::string address = "tcp://" + options.bind_host + ":" +
                          (options.port == 0 ? std::string("*") : std::to_string(options.port));
    t->router_.bind(address);
    t->endpoint_ = t->router_.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return Status::Unavailable("cannot bind " + self.ToString() + " on " + options.bind_host + ":" +
                               std::to_string(options.port) + ": " + e.what());
  }
  t->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (t->wake_fd_ < 0) return Status::Internal("eventfd failed");
  {
    MutexLock lock(&t->releases_->mu);
    t->releases_->wake_fd = t->wake_fd_;
  }
  return t;
}

ZmqTransport::~ZmqTransport() {
  Stop();
  {
    MutexLock lock(&releases_->mu);  // frames still held elsewhere must not write to the fd
    releases_->closed = true;
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status ZmqTransport::AddPeer(const NodeId& peer, const std::string& endpoint) {
  if (endpoint.empty()) return Status::InvalidArgument("empty endpoint for " + peer.ToString());
  MutexLock lock(&mu_);
  peers_[peer] = endpoint;
  return OkStatus();
}

void ZmqTransport::SetPeerPid(const NodeId& peer, int pid) {
  MutexLock lock(&mu_);
  peer_pids_[peer] = pid;
}

Status ZmqTransport::Start(MessageHandler handler) {
  MutexLock lock(&mu_);
  if (started_) return Status::FailedPrecondition("transport already started");
  handler_ = std::move(handler);
  started_ = true;
  io_thread_ = std::thread([this] {
    logging::SetThreadLogTag(self_.ToString() + "/io");
    IoLoop();
  });
  return OkStatus();
}

Status ZmqTransport::Send(const NodeId& to, Message message) {
  *message.header.mutable_sender() = self_.ToProto();
  {
    MutexLock lock(&mu_);
    if (!started_ || stopping_)
      return Status::Unavailable(self_.ToString() + " transport is stopped");
    if (peers_.find(to) == peers_.end()) {
      return Status::Unavailable("no address known for " + to.ToString());
    }
    outbox_.push_back(Outgoing{to, std::move(message)});
  }
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;  // a full counter (EAGAIN) still wakes the loop
  return OkStatus();
}

void ZmqTransport::Stop() {
  {
    MutexLock lock(&mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
  if (io_thread_.joinable()) io_thread_.join();
  if (auth_failures_ > 0 || refused_ > 0 || handshake_failures_ > 0) {
    TS_LOG(WARNING) << "refused " << auth_failures_.load() << " connection(s) without a member's "
                    << "key, " << handshake_failures_.load() << " failed handshake(s) and "
                    << refused_.load() << " message(s) not from their connection's member ("
                    << malformed_.load() << " malformed)";
  }
  if (shared_sent_ > 0 || shared_received_ > 0) {
    TS_VLOG(1) << "shared-memory frames: sent " << shared_sent_.load() << ", received "
               << shared_received_.load();
  }
}

zmq::socket_t* ZmqTransport::DealerFor(const NodeId& to) {
  auto it = dealers_.find(to);
  if (it != dealers_.end()) return &it->second;
  std::string endpoint;
  {
    MutexLock lock(&mu_);
    endpoint = peers_[to];
  }
  zmq::socket_t dealer(context_, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::sndhwm, 0);
  dealer.set(zmq::sockopt::linger, options_.linger_ms);
  dealer.set(zmq::sockopt::routing_id, self_.ToString());
  if (keys_) {
    // The peer's server key derives from the secret: only a member holding it can answer.
    SetKey(dealer, ZMQ_CURVE_SERVERKEY, auth::NodeKeyPair(*options_.secret, to).public_key);
    SetKey(dealer, ZMQ_CURVE_PUBLICKEY, keys_->public_key);
    SetKey(dealer, ZMQ_CURVE_SECRETKEY, keys_->secret_key);
  }
  dealer.connect(endpoint);
  return &dealers_.emplace(to, std::move(dealer)).first->second;
}

void ZmqTransport::SendOne(Outgoing& out) {
  try {
    zmq::socket_t* dealer = DealerFor(out.to);
    const size_t n = out.message.frames.size();
    std::vector<bool> by_descriptor(n, false);
    if (options_.shared_memory) {
      for (size_t i = 0; i < n; ++i) {
        const Frame& f = out.message.frames[i];
        if (f.size() < options_.shared_min_bytes || f.owner() == nullptr) continue;
        std::optional<shared_frames::BlockInfo> block = shared_frames::Find(f.data(), f.size());
        if (!block) continue;
        proto::SharedFrame* d = out.message.header.add_shared_frames();
        d->set_frame_index(static_cast<uint32_t>(i));
        d->set_token(next_token_++);
        d->set_fd(block->fd);
        d->set_block_id(block->block_id);
        d->set_inode(block->inode);
        d->set_block_bytes(block->bytes);
        d->set_offset(static_cast<uint64_t>(f.as<char>() - block->base));
        d->set_size(f.size());
        held_[d->token()] = f.owner();
        by_descriptor[i] = true;
      }
      if (out.message.header.shared_frames_size() > 0) {
        out.message.header.set_sender_pid(pid_);
        shared_sent_ += out.message.header.shared_frames_size();
        held_count_ = static_cast<int64_t>(held_.size());
      }
    }
    std::string header = out.message.header.SerializeAsString();
    dealer->send(zmq::buffer(header), n > 0 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    for (size_t i = 0; i < n; ++i) {
      const Frame& f = out.message.frames[i];
      zmq::send_flags flags = i + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (by_descriptor[i]) {
        dealer->send(zmq::const_buffer(nullptr, 0), flags);
      } else if (f.size() >= options_.zero_copy_bytes && f.owner() != nullptr) {
        auto* hint = new std::shared_ptr<const void>(f.owner());
        zmq::message_t msg(const_cast<void*>(f.data()), f.size(), &ReleaseFrame, hint);
        dealer->send(msg, flags);
      } else {
        dealer->send(zmq::const_buffer(f.data(), f.size()), flags);
      }
    }
  } catch (const zmq::error_t& e) {
    TS_LOG(ERROR) << "send to " << out.to.ToString() << " failed: " << e.what();
    for (const auto& d : out.message.header.shared_frames()) held_.erase(d.token());
    held_count_ = static_cast<int64_t>(held_.size());
  }
}

void ZmqTransport::ReceiveAll() {
  while (true) {
    std::vector<zmq::message_t> parts;
    try {
      zmq::message_t part;
      if (!router_.recv(part, zmq::recv_flags::dontwait)) return;
      parts.push_back(std::move(part));
      while (parts.back().more()) {
        zmq::message_t next;
        if (!router_.recv(next, zmq::recv_flags::none)) break;
        parts.push_back(std::move(next));
      }
    } catch (const zmq::error_t& e) {
      TS_LOG(ERROR) << "receive failed: " << e.what();
      return;
    }
    // parts[0] is the sender's routing id; parts[1] the header.
    if (parts.size() < 2) {
      ++malformed_;
      TS_LOG(WARNING) << "dropped a message of " << parts.size() << " part(s) from routing id \""
                      << EscapeUntrusted(parts.empty() ? "" : parts[0].to_string_view())
                      << "\": no header";
      continue;
    }
    Message message;
    Status s = DecodeProto(parts[1].data(), parts[1].size(), &message.header);
    if (!s.ok()) {
      ++malformed_;
      TS_LOG(WARNING) << "dropped a message from routing id \""
                      << EscapeUntrusted(parts[0].to_string_view()) << "\": " << s.message();
      continue;
    }
    if (!SenderMatchesConnection(parts, message.header)) continue;
    if (message.header.shared_frames_size() > 0) {
      int expected_pid = 0;
      {
        MutexLock lock(&mu_);
        auto it = peer_pids_.find(*NodeId::FromProto(message.header.sender()));
        if (it != peer_pids_.end()) expected_pid = it->second;
      }
      if (expected_pid == 0 || message.header.sender_pid() != expected_pid) {
        ++refused_;
        TS_LOG(WARNING) << "refused shared frames from "
                        << NodeId::FromProto(message.header.sender())->ToString()
                        << " (routing id \"" << EscapeUntrusted(parts[0].to_string_view())
                        << "\"): they name pid " << message.header.sender_pid() << ", "
                        << (expected_pid == 0 ? std::string("but that peer is not on this host")
                                              : "not its pid " + std::to_string(expected_pid));
        continue;
      }
    }
    if (message.header.command() == proto::COMMAND_RELEASE) {
      auto from = NodeId::FromProto(message.header.sender());  // checked above
      HandleRelease(*from, parts);
      continue;
    }
    message.frames.reserve(parts.size() - 2);
    for (size_t i = 2; i < parts.size(); ++i) {
      auto holder = std::make_shared<zmq::message_t>(std::move(parts[i]));
      const void* data = holder->data();
      size_t size = holder->size();
      message.frames.push_back(Frame::Wrap(std::shared_ptr<const void>(holder, data), data, size));
    }
    if (message.header.shared_frames_size() > 0) {
      s = MapSharedFrames(&message);
      if (!s.ok()) {
        ++malformed_;
        TS_LOG(WARNING) << "dropped " << message.DebugString() << ": " << s.message();
        continue;
      }
    }
    handler_(std::move(message));
  }
}

bool ZmqTransport::SenderMatchesConnection(const std::vector<zmq::message_t>& parts,
                                           const proto::Header& header) {
  // The connection's name: the ZAP User-Id (the member whose key completed the CURVE handshake;
  // libzmq attaches it to every frame after the routing id) or, under NULL, the routing id the
  // peer chose for itself.
  std::string connection;
  if (keys_) {
    const char* user_id = zmq_msg_gets(parts[1].handle(), "User-Id");
    if (user_id != nullptr) connection = user_id;
  } else {
    connection = parts[0].to_string();
  }
  StatusOr<NodeId> claimed = NodeId::FromProto(header.sender());
  if (claimed.ok() && !connection.empty() && claimed->ToString() == connection) return true;
  ++refused_;
  const std::string routing_id = parts[0].to_string();
  if (logged_refusals_.size() < kMaxLoggedRefusals &&
      logged_refusals_.insert("routing id " + routing_id).second) {
    TS_LOG(WARNING) << "refused a message claiming to come from "
                    << (claimed.ok() ? claimed->ToString() : "an invalid node id")
                    << " on the connection of "
                    << (connection.empty() ? std::string("an unnamed peer")
                                           : EscapeUntrusted(connection))
                    << " (routing id \"" << EscapeUntrusted(routing_id)
                    << "\"); further refusals on it are only counted";
  }
  return false;
}

void ZmqTransport::DrainMonitor() {
  while (true) {
    try {
      zmq::message_t event;
      if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
      while (event.more()) {
        zmq::message_t rest;  // the ROUTER's own address
        if (!monitor_.recv(rest, zmq::recv_flags::none)) break;
        if (!rest.more()) break;
      }
      ++handshake_failures_;
    } catch (const zmq::error_t& e) {
      TS_LOG(ERROR) << "monitor receive failed: " << e.what();
      return;
    }
  }
}

void ZmqTransport::ServeZap() {
  while (true) {
    std::vector<zmq::message_t> request;
    try {
      zmq::message_t part;
      if (!zap_.recv(part, zmq::recv_flags::dontwait)) return;
      request.push_back(std::move(part));
      while (request.back().more()) {
        zmq::message_t next;
        if (!zap_.recv(next, zmq::recv_flags::none)) break;
        request.push_back(std::move(next));
      }
    } catch (const zmq::error_t& e) {
      TS_LOG(ERROR) << "ZAP receive failed: " << e.what();
      return;
    }
    // RFC 27: version, request id, domain, address, routing id, mechanism, credentials...
    std::string user_id;
    if (request.size() >= 7 && request[0].to_string_view() == "1.0" &&
        request[5].to_string_view() == "CURVE" && request[6].size() == auth::kKeyBytes) {
      auto it = member_keys_.find(request[6].to_string());
      if (it != member_keys_.end()) user_id = it->second.ToString();
    }
    if (user_id.empty()) {
      ++auth_failures_;
      const std::string address = request.size() > 3 ? request[3].to_string() : "";
      if (logged_refusals_.size() < kMaxLoggedRefusals &&
          logged_refusals_.insert("address " + address).second) {
        TS_LOG(WARNING) << "refused a connection from " << EscapeUntrusted(address)
                        << ": its key is not one of this job's members (further refusals from "
                           "that address are only counted)";
      }
    }
    try {
      zap_.send(zmq::str_buffer("1.0"), zmq::send_flags::sndmore);
      zap_.send(zmq::buffer(request.size() > 1 ? request[1].to_string() : std::string()),
                zmq::send_flags::sndmore);
      zap_.send(user_id.empty() ? zmq::str_buffer("400") : zmq::str_buffer("200"),
                zmq::send_flags::sndmore);
      zap_.send(
          user_id.empty() ? zmq::str_buffer("not a member of this job") : zmq::str_buffer("OK"),
          zmq::send_flags::sndmore);
      zap_.send(zmq::buffer(user_id), zmq::send_flags::sndmore);
      zap_.send(zmq::const_buffer(nullptr, 0), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      TS_LOG(ERROR) << "ZAP reply failed: " << e.what();
    }
  }
}

Status ZmqTransport::MapSharedFrames(Message* message) {
  proto::Header& h = message->header;
  auto sender = NodeId::FromProto(h.sender());
  if (!sender.ok()) return sender.status();
  auto give_back = [&](Status error) {
    for (const auto& d : h.shared_frames()) releases_->Push(*sender, d.token());
    return error;
  };
  std::vector<std::shared_ptr<const shared_frames::Mapping>> mapped;
  std::vector<bool> seen(message->frames.size(), false);
  for (const auto& d : h.shared_frames()) {
    if (d.frame_index() >= message->frames.size() || seen[d.frame_index()] ||
        !message->frames[d.frame_index()].empty()) {
      return give_back(Status::InvalidArgument(
          "shared frame descriptor names frame " + std::to_string(d.frame_index()) + " of " +
          std::to_string(message->frames.size()) + " (not an empty frame, or named twice)"));
    }
    seen[d.frame_index()] = true;
    if (d.size() == 0 || d.offset() > d.block_bytes() || d.size() > d.block_bytes() - d.offset()) {
      return give_back(Status::InvalidArgument(
          "shared frame [" + std::to_string(d.offset()) + ", +" + std::to_string(d.size()) +
          ") lies outside its " + std::to_string(d.block_bytes()) + "-byte block"));
    }
    shared_frames::RemoteBlock block;
    block.pid = h.sender_pid();
    block.fd = d.fd();
    block.block_id = d.block_id();
    block.inode = d.inode();
    block.bytes = d.block_bytes();
    auto mapping = mappings_.Map(block);
    if (!mapping.ok()) return give_back(mapping.status());
    mapped.push_back(std::move(*mapping));
  }
  auto release = [](void* queue, const NodeId& from, uint64_t token) {
    static_cast<ReleaseQueue*>(queue)->Push(from, token);
  };
  for (int k = 0; k < h.shared_frames_size(); ++k) {
    const proto::SharedFrame& d = h.shared_frames(k);
    auto ref = std::make_shared<SharedFrameRef>(mapped[k], releases_, release, *sender, d.token());
    const void* data = mapped[k]->base() + d.offset();
    message->frames[d.frame_index()] =
        Frame::Wrap(std::shared_ptr<const void>(ref, data), data, d.size());
  }
  shared_received_ += h.shared_frames_size();
  h.clear_shared_frames();
  h.clear_sender_pid();
  return OkStatus();
}

void ZmqTransport::HandleRelease(const NodeId& from, const std::vector<zmq::message_t>& parts) {
  if (parts.size() != 3 || parts[2].size() % sizeof(uint64_t) != 0) {
    ++malformed_;
    TS_LOG(WARNING) << "dropped a RELEASE from " << from.ToString() << " with " << parts.size()
                    << " part(s)";
    return;
  }
  const size_t n = parts[2].size() / sizeof(uint64_t);
  for (size_t i = 0; i < n; ++i) {
    uint64_t token;
    std::memcpy(&token, parts[2].data<char>() + i * sizeof(token), sizeof(token));
    if (held_.erase(token) == 0) {
      ++malformed_;
      TS_LOG(WARNING) << "RELEASE from " << from.ToString() << " names unknown token " << token;
    }
  }
  held_count_ = static_cast<int64_t>(held_.size());
}

void ZmqTransport::SendReleases() {
  std::map<NodeId, std::vector<uint64_t>> tokens;
  {
    MutexLock lock(&releases_->mu);
    tokens.swap(releases_->tokens);
  }
  for (auto& [to, list] : tokens) {
    Outgoing out;
    out.to = to;
    out.message.header.set_command(proto::COMMAND_RELEASE);
    *out.message.header.mutable_sender() = self_.ToProto();
    out.message.frames.push_back(Frame::FromVector(std::move(list)));
    {
      MutexLock lock(&mu_);
      if (peers_.find(to) == peers_.end()) {
        TS_LOG(WARNING) << "cannot release shared frames of " << to.ToString()
                        << ": no address known";
        continue;
      }
    }
    SendOne(out);
  }
}

void ZmqTransport::IoLoop() {
  // router, wake fd, monitor, and the ZAP handler under CURVE.
  zmq::pollitem_t items[4] = {{router_.handle(), 0, ZMQ_POLLIN, 0},
                              {nullptr, wake_fd_, ZMQ_POLLIN, 0},
                              {monitor_.handle(), 0, ZMQ_POLLIN, 0},
                              {zap_.handle(), 0, ZMQ_POLLIN, 0}};
  const int num_items = zap_.handle() != nullptr ? 4 : 3;
  std::deque<Outgoing> batch;
  while (true) {
    try {
      zmq::poll(items, num_items, std::chrono::milliseconds(-1));
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) continue;
      TS_LOG(ERROR) << "poll failed: " << e.what();
      break;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      uint64_t count;
      ssize_t n = read(wake_fd_, &count, sizeof(count));
      (void)n;
    }
    bool stopping;
    {
      MutexLock lock(&mu_);
      batch.swap(outbox_);
      stopping = stopping_;
    }
    for (Outgoing& out : batch) SendOne(out);
    batch.clear();
    // ZAP first: a handshake waiting for its answer holds back that peer's messages.
    if (num_items == 4 && (items[3].revents & ZMQ_POLLIN)) ServeZap();
    if (items[2].revents & ZMQ_POLLIN) DrainMonitor();
    if (items[0].revents & ZMQ_POLLIN) ReceiveAll();
    SendReleases();
    if (stopping) break;
  }
  // Frames peers have not released go back to this process's cache (a peer still reading one
  // keeps its own mapping of the bytes).
  held_.clear();
  held_count_ = 0;
  // Flush: DEALERs linger up to linger_ms to deliver what is queued; the ROUTER does not.
  dealers_.clear();
  router_.close();
  monitor_.close();
  if (zap_.handle() != nullptr) zap_.close();
}

}  // namespace tessera

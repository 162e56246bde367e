#include "core/zmq_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include "core/logging.h"

namespace tessera {
namespace {

// Releases the reference ZeroMQ held on a zero-copy frame (called on a ZeroMQ thread).
void ReleaseFrame(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

}  // namespace

ZmqTransport::ZmqTransport(NodeId self, const ZmqTransportOptions& options)
    : self_(self), options_(options), context_(1), router_(context_, zmq::socket_type::router) {}

StatusOr<std::unique_ptr<ZmqTransport>> ZmqTransport::Create(NodeId self,
                                                             const ZmqTransportOptions& options) {
  std::unique_ptr<ZmqTransport> t(new ZmqTransport(self, options));
  try {
    t->router_.set(zmq::sockopt::rcvhwm, 0);
    t->router_.set(zmq::sockopt::sndhwm, 0);
    t->router_.set(zmq::sockopt::linger, 0);
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
  return t;
}

ZmqTransport::~ZmqTransport() {
  Stop();
  if (wake_fd_ >= 0) close(wake_fd_);
}

Status ZmqTransport::AddPeer(const NodeId& peer, const std::string& endpoint) {
  if (endpoint.empty()) return Status::InvalidArgument("empty endpoint for " + peer.ToString());
  std::lock_guard lock(mu_);
  peers_[peer] = endpoint;
  return OkStatus();
}

Status ZmqTransport::Start(MessageHandler handler) {
  std::lock_guard lock(mu_);
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
    std::lock_guard lock(mu_);
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
    std::lock_guard lock(mu_);
    if (!started_ || stopping_) return;
    stopping_ = true;
  }
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof(one));
  (void)n;
  if (io_thread_.joinable()) io_thread_.join();
}

zmq::socket_t* ZmqTransport::DealerFor(const NodeId& to) {
  auto it = dealers_.find(to);
  if (it != dealers_.end()) return &it->second;
  std::string endpoint;
  {
    std::lock_guard lock(mu_);
    endpoint = peers_[to];
  }
  zmq::socket_t dealer(context_, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::sndhwm, 0);
  dealer.set(zmq::sockopt::linger, options_.linger_ms);
  dealer.set(zmq::sockopt::routing_id, self_.ToString());
  dealer.connect(endpoint);
  return &dealers_.emplace(to, std::move(dealer)).first->second;
}

void ZmqTransport::SendOne(Outgoing& out) {
  try {
    zmq::socket_t* dealer = DealerFor(out.to);
    std::string header = out.message.header.SerializeAsString();
    const size_t n = out.message.frames.size();
    dealer->send(zmq::buffer(header), n > 0 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    for (size_t i = 0; i < n; ++i) {
      const Frame& f = out.message.frames[i];
      zmq::send_flags flags = i + 1 < n ? zmq::send_flags::sndmore : zmq::send_flags::none;
      if (f.size() >= options_.zero_copy_bytes && f.owner() != nullptr) {
        auto* hint = new std::shared_ptr<const void>(f.owner());
        zmq::message_t msg(const_cast<void*>(f.data()), f.size(), &ReleaseFrame, hint);
        dealer->send(msg, flags);
      } else {
        dealer->send(zmq::const_buffer(f.data(), f.size()), flags);
      }
    }
  } catch (const zmq::error_t& e) {
    TS_LOG(ERROR) << "send to " << out.to.ToString() << " failed: " << e.what();
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
      TS_LOG(WARNING) << "dropped a message with " << parts.size() << " part(s): no header";
      continue;
    }
    Message message;
    Status s = DecodeProto(parts[1].data(), parts[1].size(), &message.header);
    if (!s.ok()) {
      ++malformed_;
      TS_LOG(WARNING) << "dropped a message from " << parts[0].to_string() << ": " << s.message();
      continue;
    }
    message.frames.reserve(parts.size() - 2);
    for (size_t i = 2; i < parts.size(); ++i) {
      auto holder = std::make_shared<zmq::message_t>(std::move(parts[i]));
      const void* data = holder->data();
      size_t size = holder->size();
      message.frames.push_back(Frame::Wrap(std::shared_ptr<const void>(holder, data), data, size));
    }
    handler_(std::move(message));
  }
}

void ZmqTransport::IoLoop() {
  zmq::pollitem_t items[2] = {{router_.handle(), 0, ZMQ_POLLIN, 0},
                              {nullptr, wake_fd_, ZMQ_POLLIN, 0}};
  std::deque<Outgoing> batch;
  while (true) {
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(-1));
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
      std::lock_guard lock(mu_);
      batch.swap(outbox_);
      stopping = stopping_;
    }
    for (Outgoing& out : batch) SendOne(out);
    batch.clear();
    if (items[0].revents & ZMQ_POLLIN) ReceiveAll();
    if (stopping) break;
  }
  // Flush: DEALERs linger up to linger_ms to deliver what is queued; the ROUTER does not.
  dealers_.clear();
  router_.close();
}

}  // namespace tessera

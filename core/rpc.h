// RpcNode: requests and replies over a Transport. Numbers each request, keeps any number in
// flight, and matches replies to requests in whatever order they arrive. Incoming requests go to
// the role's RequestHandler; a reply with a non-OK status turns into that Status for the caller.
//
// Threads: the RequestHandler runs on the transport's delivery thread (see transport.h) and must
// not block; Call/Reply/Send may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <unordered_map>

#include "core/mutex.h"
#include "core/transport.h"

namespace tessera {

using RequestHandler = std::function<void(Message&& request)>;

class RpcNode {
 public:
  explicit RpcNode(Transport* transport);  // borrows; the transport must outlive this
  ~RpcNode();
  RpcNode(const RpcNode&) = delete;
  RpcNode& operator=(const RpcNode&) = delete;

  // Starts the transport with this node's dispatcher.
  Status Start(RequestHandler handler);
  // Stops the transport; every call still waiting fails with kCancelled.
  void Stop() TS_EXCLUDES(mu_);
  // Fails every call still waiting with `status` (an abort from the scheduler); later calls work.
  void FailPending(const Status& status) TS_EXCLUDES(mu_);
  // Fails every call still waiting, and every later call at once, with `status`: the job is
  // over (aborted, or the scheduler is lost), so nothing may wait for a peer any more.
  void Poison(const Status& status) TS_EXCLUDES(mu_);
  // The first Poison's status, waiting at most `timeout` for one; OK when there was none.
  Status WaitPoisoned(std::chrono::milliseconds timeout) TS_EXCLUDES(mu_);

  // Sends `request` (its request id is assigned here) and returns the future reply.
  std::future<StatusOr<Message>> Call(const NodeId& to, Message request) TS_EXCLUDES(mu_);
  // Call and wait at most `timeout` (kDeadlineExceeded naming the peer and command).
  StatusOr<Message> CallAndWait(const NodeId& to, Message request,
                                std::chrono::milliseconds timeout);
  // Waits for a future returned by Call; kDeadlineExceeded after `timeout`.
  static StatusOr<Message> Wait(std::future<StatusOr<Message>>& reply,
                                std::chrono::milliseconds timeout, const std::string& what);

  // Answers `request` with `reply` (command and request id copied, is_reply set).
  Status Reply(const Message& request, Message reply);
  // Answers `request` with an error status and no frames.
  Status ReplyError(const Message& request, const Status& status);
  // One-way message; nothing waits for an answer.
  Status Send(const NodeId& to, Message message);

  Transport& transport() { return *transport_; }
  const NodeId& self() const { return transport_->self(); }

 private:
  void Dispatch(Message&& message) TS_EXCLUDES(mu_);

  Transport* transport_;
  RequestHandler handler_;
  std::atomic<uint64_t> next_request_id_{1};
  Mutex mu_;
  CondVar poisoned_cv_;  // signalled by Poison
  std::unordered_map<uint64_t, std::promise<StatusOr<Message>>> pending_ TS_GUARDED_BY(mu_);
  bool stopped_ TS_GUARDED_BY(mu_) = false;
  Status poisoned_ TS_GUARDED_BY(mu_);
};

// The Status carried by a reply header (OK when status_code is 0).
Status StatusFromHeader(const proto::Header& header);

}  // namespace tessera

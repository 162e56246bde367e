#include "core/rpc.h"

#include <gtest/gtest.h>

#include <memory>
#include <mutex>

#include "core/inproc_transport.h"
#include "core/zmq_transport.h"

namespace tessera {
namespace {

using std::chrono::milliseconds;

enum class Kind { kInProc, kZmq };

// A client and a server RpcNode; the server's handler keeps requests so each test decides when
// and in which order to answer.
class RpcTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    const NodeId c = NodeId::Worker(0), s = NodeId::Server(0);
    if (GetParam() == Kind::kZmq) {
      auto tc = ZmqTransport::Create(c, ZmqTransportOptions());
      auto ts = ZmqTransport::Create(s, ZmqTransportOptions());
      ASSERT_TRUE(tc.ok() && ts.ok());
      ASSERT_TRUE((*tc)->AddPeer(s, (*ts)->endpoint()).ok());
      ASSERT_TRUE((*ts)->AddPeer(c, (*tc)->endpoint()).ok());
      client_transport_ = std::move(*tc);
      server_transport_ = std::move(*ts);
    } else {
      client_transport_ = std::make_unique<InProcTransport>(&hub_, c);
      server_transport_ = std::make_unique<InProcTransport>(&hub_, s);
    }
    client_ = std::make_unique<RpcNode>(client_transport_.get());
    server_ = std::make_unique<RpcNode>(server_transport_.get());
    ASSERT_TRUE(client_->Start(nullptr).ok());
    ASSERT_TRUE(server_
                    ->Start([this](Message&& m) {
                      std::lock_guard lock(mu_);
                      held_.push_back(std::move(m));
                      arrived_.notify_all();
                    })
                    .ok());
  }
  void TearDown() override {
    client_->Stop();
    server_->Stop();
  }
  // Waits until the server holds `n` requests.
  bool WaitForRequests(size_t n) {
    std::unique_lock lock(mu_);
    return arrived_.wait_for(lock, std::chrono::seconds(10), [&] { return held_.size() >= n; });
  }
  static Message Request(uint64_t payload) {
    Message m;
    m.header.set_command(proto::COMMAND_ECHO);
    m.frames.push_back(Frame::Copy(&payload, sizeof(payload)));
    return m;
  }

  InProcHub hub_;
  std::unique_ptr<Transport> client_transport_, server_transport_;
  std::unique_ptr<RpcNode> client_, server_;
  std::mutex mu_;
  std::condition_variable arrived_;
  std::vector<Message> held_;
};

TEST_P(RpcTest, ManyCallsInFlightGetTheirOwnRepliesInAnyOrder) {
  constexpr int kCalls = 200;
  std::vector<std::future<StatusOr<Message>>> futures;
  for (int i = 0; i < kCalls; ++i) futures.push_back(client_->Call(server_->self(), Request(i)));
  ASSERT_TRUE(WaitForRequests(kCalls));
  // Reply in reverse arrival order, echoing payload * 10.
  for (int i = kCalls - 1; i >= 0; --i) {
    uint64_t payload = held_[i].frames[0].as<uint64_t>()[0] * 10;
    Message reply;
    reply.frames.push_back(Frame::Copy(&payload, sizeof(payload)));
    ASSERT_TRUE(server_->Reply(held_[i], std::move(reply)).ok());
  }
  for (int i = 0; i < kCalls; ++i) {
    auto reply = RpcNode::Wait(futures[i], milliseconds(10000), "call");
    ASSERT_TRUE(reply.ok()) << reply.status().ToString();
    EXPECT_EQ(reply->frames[0].as<uint64_t>()[0], static_cast<uint64_t>(i) * 10);
    EXPECT_TRUE(reply->header.is_reply());
  }
}

TEST_P(RpcTest, ErrorReplyBecomesTheCallersStatus) {
  auto future = client_->Call(server_->self(), Request(1));
  ASSERT_TRUE(WaitForRequests(1));
  ASSERT_TRUE(server_->ReplyError(held_[0], Status::DataLoss("torn frame")).ok());
  auto reply = RpcNode::Wait(future, milliseconds(5000), "call");
  EXPECT_EQ(reply.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(reply.status().message(), "torn frame");
}

TEST_P(RpcTest, UnansweredCallTimesOut) {
  auto reply = client_->CallAndWait(server_->self(), Request(1), milliseconds(50));
  EXPECT_EQ(reply.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(reply.status().message().find("server:0"), std::string::npos);
}

TEST_P(RpcTest, FailPendingAndStopReleaseWaitingCallers) {
  auto first = client_->Call(server_->self(), Request(1));
  ASSERT_TRUE(WaitForRequests(1));
  client_->FailPending(Status::Aborted("worker:3 lost"));
  EXPECT_EQ(RpcNode::Wait(first, milliseconds(1000), "x").status().code(), StatusCode::kAborted);
  auto second = client_->Call(server_->self(), Request(2));
  ASSERT_TRUE(WaitForRequests(2));
  client_->Stop();
  EXPECT_EQ(RpcNode::Wait(second, milliseconds(1000), "x").status().code(), StatusCode::kCancelled);
}

TEST_P(RpcTest, CallToUnknownNodeFailsAtOnce) {
  auto reply = client_->CallAndWait(NodeId::Server(7), Request(1), milliseconds(5000));
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
}

INSTANTIATE_TEST_SUITE_P(Both, RpcTest, ::testing::Values(Kind::kInProc, Kind::kZmq),
                         [](const auto& info) {
                           return info.param == Kind::kZmq ? "Zmq" : "InProc";
                         });

}  // namespace
}  // namespace tessera

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <numeric>
#include <zmq.hpp>

#include "core/blocking_queue.h"
#include "core/inproc_transport.h"
#include "core/zmq_transport.h"

namespace tessera {
namespace {

using std::chrono::milliseconds;

enum class Kind { kInProc, kZmq, kZmqCurve };

// Two nodes, a and b, connected by the transport under test; b's messages land in `inbox`.
class TransportTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    const NodeId a = NodeId::Worker(0), b = NodeId::Server(0);
    if (GetParam() != Kind::kInProc) {
      ZmqTransportOptions options;
      if (GetParam() == Kind::kZmqCurve) {
        auth::JobSecret secret;
        secret.bytes.fill(42);
        options.secret = secret;
        options.members = {a, b};
      }
      auto ta = ZmqTransport::Create(a, options);
      auto tb = ZmqTransport::Create(b, options);
      ASSERT_TRUE(ta.ok() && tb.ok());
      a_ = std::move(*ta);
      b_ = std::move(*tb);
      ASSERT_TRUE(a_->AddPeer(b, b_->endpoint()).ok());
      ASSERT_TRUE(b_->AddPeer(a, a_->endpoint()).ok());
    } else {
      a_ = std::make_unique<InProcTransport>(&hub_, a);
      b_ = std::make_unique<InProcTransport>(&hub_, b);
    }
    ASSERT_TRUE(a_->Start([this](Message&& m) { a_inbox_.Push(std::move(m)); }).ok());
    ASSERT_TRUE(b_->Start([this](Message&& m) { inbox_.Push(std::move(m)); }).ok());
  }
  void TearDown() override {
    a_->Stop();
    b_->Stop();
  }

  InProcHub hub_;
  std::unique_ptr<Transport> a_, b_;
  BlockingQueue<Message> inbox_, a_inbox_;
};

TEST_P(TransportTest, DeliversHeaderAndFramesIntactWithSender) {
  Message m;
  m.header.set_command(proto::COMMAND_ECHO);
  m.header.set_request_id(42);
  std::vector<uint64_t> keys(1000);
  std::iota(keys.begin(), keys.end(), 7);
  m.frames.push_back(Frame::Copy(keys.data(), keys.size() * 8));
  m.frames.push_back(Frame::Copy("small", 5));
  m.frames.push_back(Frame());  // empty frames survive too
  ASSERT_TRUE(a_->Send(b_->self(), m).ok());
  auto got = inbox_.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 42u);
  EXPECT_EQ(got->header.sender().role(), proto::ROLE_WORKER);
  ASSERT_EQ(got->frames.size(), 3u);
  ASSERT_EQ(got->frames[0].size(), keys.size() * 8);
  EXPECT_EQ(std::memcmp(got->frames[0].data(), keys.data(), keys.size() * 8), 0);
  EXPECT_EQ(std::string(got->frames[1].as<char>(), 5), "small");
  EXPECT_EQ(got->frames[2].size(), 0u);
}

TEST_P(TransportTest, LargeZeroCopyFramesArriveIntactAfterSenderDropsThem) {
  constexpr size_t kFloats = 4 << 20;  // 16 MiB
  for (int round = 0; round < 3; ++round) {
    std::vector<float> values(kFloats);
    for (size_t i = 0; i < kFloats; ++i) values[i] = static_cast<float>(i % 1000) + round;
    Message m;
    m.header.set_command(proto::COMMAND_ECHO);
    m.frames.push_back(Frame::FromVector(std::move(values)));
    ASSERT_TRUE(a_->Send(b_->self(), std::move(m)).ok());  // the sender keeps no reference
  }
  for (int round = 0; round < 3; ++round) {
    auto got = inbox_.PopFor(milliseconds(10000));
    ASSERT_TRUE(got.has_value());
    ASSERT_EQ(got->frames[0].count<float>(), kFloats);
    const float* v = got->frames[0].as<float>();
    EXPECT_EQ(v[0], static_cast<float>(round));
    EXPECT_EQ(v[kFloats - 1], static_cast<float>((kFloats - 1) % 1000) + round);
  }
}

TEST_P(TransportTest, ManyMessagesInFlightAllArriveInOrderPerSender) {
  constexpr int kCount = 2000;
  for (int i = 0; i < kCount; ++i) {
    Message m;
    m.header.set_command(proto::COMMAND_ECHO);
    m.header.set_request_id(i);
    ASSERT_TRUE(a_->Send(b_->self(), std::move(m)).ok());
  }
  for (int i = 0; i < kCount; ++i) {
    auto got = inbox_.PopFor(milliseconds(5000));
    ASSERT_TRUE(got.has_value()) << "message " << i;
    EXPECT_EQ(got->header.request_id(), static_cast<uint64_t>(i));
  }
}

TEST_P(TransportTest, SendToUnknownPeerIsUnavailable) {
  Message m;
  EXPECT_EQ(a_->Send(NodeId::Server(9), std::move(m)).code(), StatusCode::kUnavailable);
}

TEST_P(TransportTest, SendAfterStopIsRefusedAndStopIsIdempotent) {
  b_->Stop();
  b_->Stop();
  Message m;
  EXPECT_FALSE(b_->Send(a_->self(), std::move(m)).ok());
}

INSTANTIATE_TEST_SUITE_P(All, TransportTest,
                         ::testing::Values(Kind::kInProc, Kind::kZmq, Kind::kZmqCurve),
                         [](const auto& info) {
                           return info.param == Kind::kZmq        ? "Zmq"
                                  : info.param == Kind::kZmqCurve ? "ZmqCurve"
                                                                  : "InProc";
                         });

TEST(ZmqTransportTest, MalformedWireMessagesAreDroppedAndTheNodeKeepsServing) {
  auto server = ZmqTransport::Create(NodeId::Server(0), ZmqTransportOptions());
  ASSERT_TRUE(server.ok());
  BlockingQueue<Message> inbox;
  ASSERT_TRUE((*server)->Start([&](Message&& m) { inbox.Push(std::move(m)); }).ok());

  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::routing_id, "worker:0");  // NULL mechanism: the connection's name
  raw.connect((*server)->endpoint());
  raw.send(zmq::str_buffer("\xff\xff\xff not a header"), zmq::send_flags::none);  // bad header

  proto::Header good;
  good.set_command(proto::COMMAND_ECHO);
  good.set_request_id(5);
  *good.mutable_sender() = NodeId::Worker(0).ToProto();
  std::string bytes = good.SerializeAsString();
  raw.send(zmq::buffer(bytes), zmq::send_flags::none);

  auto got = inbox.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 5u);
  EXPECT_EQ((*server)->malformed_messages(), 1);
  (*server)->Stop();
}

TEST(InProcTransportTest, RegisteringTheSameNodeTwiceFails) {
  InProcHub hub;
  InProcTransport first(&hub, NodeId::Worker(0)), second(&hub, NodeId::Worker(0));
  ASSERT_TRUE(first.Start([](Message&&) {}).ok());
  EXPECT_EQ(second.Start([](Message&&) {}).code(), StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace tessera

#include "core/shared_frames.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <zmq.hpp>

#include "core/blocking_queue.h"
#include "core/zmq_transport.h"

namespace tessera {
namespace {

using std::chrono::milliseconds;

// Shared allocation is process-wide: on for one test, off again after it.
class SharedAllocation {
 public:
  SharedAllocation() { shared_frames::Enable(true); }
  ~SharedAllocation() { shared_frames::Enable(false); }
};

Frame PatternFrame(size_t floats, float seed) {
  void* out = nullptr;
  Frame f = Frame::Allocate(floats * sizeof(float), &out);
  auto* v = static_cast<float*>(out);
  for (size_t i = 0; i < floats; ++i) v[i] = seed + static_cast<float>(i % 4099);
  return f;
}

bool HasPattern(const Frame& f, size_t floats, float seed) {
  if (f.size() != floats * sizeof(float)) return false;
  for (size_t i = 0; i < floats; ++i)
    if (f.as<float>()[i] != seed + static_cast<float>(i % 4099)) return false;
  return true;
}

// Waits (bounded) until `done` holds.
template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(milliseconds(10));
  return done();
}

TEST(SharedFramesTest, LargeFramesLieInSharedBlocksOnlyWhenEnabled) {
  void* out = nullptr;
  Frame plain = Frame::Allocate(1 << 20, &out);
  EXPECT_FALSE(shared_frames::Find(plain.data(), plain.size()).has_value());
  SharedAllocation on;
  Frame shared = Frame::Allocate(1 << 20, &out);
  auto block = shared_frames::Find(shared.data(), shared.size());
  ASSERT_TRUE(block.has_value());
  EXPECT_GE(block->bytes, shared.size());
  EXPECT_GE(block->fd, 0);
  // A range inside the block is found; one running past its end is not.
  EXPECT_TRUE(shared_frames::Find(shared.as<char>() + 100, 1000).has_value());
  EXPECT_FALSE(shared_frames::Find(shared.as<char>() + 100, block->bytes).has_value());
  Frame small = Frame::Allocate(1000, &out);  // small frames stay in ordinary memory
  EXPECT_FALSE(shared_frames::Find(small.data(), small.size()).has_value());
}

TEST(SharedFramesTest, PastTheBlockLimitFramesFallBackToOrdinaryMemory) {
  SharedAllocation on;
  std::vector<Frame> frames;
  int shared = 0;
  void* out = nullptr;
  for (int i = 0; i < 300; ++i) {  // all alive at once: each needs a block of its own
    frames.push_back(Frame::Allocate(600 << 10, &out));
    std::memset(out, i, 600 << 10);  // usable either way
    shared += shared_frames::Find(frames.back().data(), frames.back().size()).has_value();
  }
  EXPECT_GT(shared, 0);
  EXPECT_LT(shared, 300);
  EXPECT_LE(shared_frames::LiveBlocks(), 256);
  for (int i = 0; i < 300; ++i) EXPECT_EQ(frames[i].as<unsigned char>()[12345], i % 256);
}

TEST(SharedFramesTest, MappingCacheMapsAVerifiedBlockAndEvictsTheLeastRecentlyUsed) {
  SharedAllocation on;
  Frame a = PatternFrame(1 << 18, 1.0f), b = PatternFrame(1 << 18, 2.0f);
  auto ba = shared_frames::Find(a.data(), a.size()), bb = shared_frames::Find(b.data(), b.size());
  ASSERT_TRUE(ba && bb);
  auto remote = [](const shared_frames::BlockInfo& info) {
    shared_frames::RemoteBlock r;
    r.pid = static_cast<int>(getpid());
    r.fd = info.fd;
    r.block_id = info.block_id;
    r.inode = info.inode;
    r.bytes = info.bytes;
    return r;
  };
  shared_frames::MappingCache cache(ba->bytes);  // room for one block
  auto ma = cache.Map(remote(*ba));
  ASSERT_TRUE(ma.ok()) << ma.status().message();
  EXPECT_NE((*ma)->base(), ba->base);  // a second mapping of the same bytes
  EXPECT_EQ(std::memcmp((*ma)->base(), a.data(), a.size()), 0);
  auto again = cache.Map(remote(*ba));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), ma->get());  // reused
  auto mb = cache.Map(remote(*bb));
  ASSERT_TRUE(mb.ok());
  EXPECT_EQ(cache.cached_bytes(), bb->bytes);  // a was evicted (its frame keeps its mapping)
  EXPECT_EQ(std::memcmp((*ma)->base(), a.data(), a.size()), 0);

  shared_frames::RemoteBlock wrong_inode = remote(*ba);
  wrong_inode.block_id = 1000000;
  wrong_inode.inode += 1;
  EXPECT_EQ(cache.Map(wrong_inode).status().code(), StatusCode::kInvalidArgument);
  shared_frames::RemoteBlock wrong_size = remote(*ba);
  wrong_size.block_id = 1000001;
  wrong_size.bytes += 4096;
  EXPECT_EQ(cache.Map(wrong_size).status().code(), StatusCode::kInvalidArgument);
  shared_frames::RemoteBlock no_fd = remote(*ba);
  no_fd.block_id = 1000002;
  no_fd.fd = 1 << 20;
  EXPECT_EQ(cache.Map(no_fd).status().code(), StatusCode::kUnavailable);
}

// Two ZeroMQ nodes with shared memory on; b's messages land in `inbox`.
class SharedTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ZmqTransportOptions options;
    options.shared_memory = true;
    auto ta = ZmqTransport::Create(NodeId::Worker(0), options);
    auto tb = ZmqTransport::Create(NodeId::Server(0), options);
    ASSERT_TRUE(ta.ok() && tb.ok());
    a_ = std::move(*ta);
    b_ = std::move(*tb);
    ASSERT_TRUE(a_->AddPeer(b_->self(), b_->endpoint()).ok());
    ASSERT_TRUE(b_->AddPeer(a_->self(), a_->endpoint()).ok());
    a_->SetPeerPid(b_->self(), static_cast<int>(getpid()));
    b_->SetPeerPid(a_->self(), static_cast<int>(getpid()));
    ASSERT_TRUE(a_->Start([](Message&&) {}).ok());
    ASSERT_TRUE(b_->Start([this](Message&& m) { inbox_.Push(std::move(m)); }).ok());
  }
  void TearDown() override {
    a_->Stop();
    b_->Stop();
  }

  SharedAllocation on_;
  std::unique_ptr<ZmqTransport> a_, b_;
  BlockingQueue<Message> inbox_;
};

TEST_F(SharedTransportTest, SharedFramesArriveByDescriptorAndAreReleasedWhenDropped) {
  constexpr size_t kFloats = 1 << 20;  // 4 MiB
  Message m;
  m.header.set_command(proto::COMMAND_ECHO);
  m.header.set_request_id(9);
  m.frames.push_back(Frame::Copy("keys", 4));
  m.frames.push_back(PatternFrame(kFloats, 3.0f));
  const void* sent_at = m.frames[1].data();
  ASSERT_TRUE(a_->Send(b_->self(), std::move(m)).ok());
  {
    auto got = inbox_.PopFor(milliseconds(5000));
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->header.request_id(), 9u);
    EXPECT_EQ(got->header.shared_frames_size(), 0);  // the transport strips its descriptors
    ASSERT_EQ(got->frames.size(), 2u);
    EXPECT_EQ(std::string(got->frames[0].as<char>(), 4), "keys");
    EXPECT_TRUE(HasPattern(got->frames[1], kFloats, 3.0f));
    EXPECT_NE(got->frames[1].data(), sent_at);  // b reads its own mapping, not a copy in a socket
    EXPECT_EQ(a_->shared_frames_sent(), 1);
    EXPECT_EQ(b_->shared_frames_received(), 1);
    EXPECT_EQ(a_->shared_frames_held(), 1);  // b still holds the frame
  }
  EXPECT_TRUE(Eventually([&] { return a_->shared_frames_held() == 0; }));
  EXPECT_EQ(a_->malformed_messages() + b_->malformed_messages(), 0);
}

TEST_F(SharedTransportTest, ReusedBlocksCarryEachStepsBytes) {
  // The sender's frame cache hands the same blocks out again once released; the receiver's
  // cached mappings must show the new contents, and blocks must not pile up.
  constexpr size_t kFloats = 3 << 18;
  const int64_t blocks_before = shared_frames::LiveBlocks();
  for (int step = 0; step < 20; ++step) {
    Message m;
    m.header.set_command(proto::COMMAND_ECHO);
    m.frames.push_back(PatternFrame(kFloats, static_cast<float>(step)));
    m.frames.push_back(PatternFrame(kFloats / 3, static_cast<float>(-step)));
    ASSERT_TRUE(a_->Send(b_->self(), std::move(m)).ok());
    auto got = inbox_.PopFor(milliseconds(5000));
    ASSERT_TRUE(got.has_value());
    ASSERT_TRUE(HasPattern(got->frames[0], kFloats, static_cast<float>(step))) << step;
    ASSERT_TRUE(HasPattern(got->frames[1], kFloats / 3, static_cast<float>(-step))) << step;
    got.reset();
    ASSERT_TRUE(Eventually([&] { return a_->shared_frames_held() == 0; })) << step;
  }
  EXPECT_EQ(a_->shared_frames_sent(), 40);
  EXPECT_LE(shared_frames::LiveBlocks() - blocks_before, 4);
}

TEST_F(SharedTransportTest, FramesOutsideSharedBlocksGoThroughTheSocket) {
  std::vector<float> values(1 << 20, 7.0f);
  Message m;
  m.header.set_command(proto::COMMAND_ECHO);
  m.frames.push_back(Frame::FromVector(std::move(values)));
  ASSERT_TRUE(a_->Send(b_->self(), std::move(m)).ok());
  auto got = inbox_.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->frames[0].count<float>(), size_t{1} << 20);
  EXPECT_EQ(got->frames[0].as<float>()[12345], 7.0f);
  EXPECT_EQ(a_->shared_frames_sent(), 0);
}

TEST(SharedTransportOffTest, ASenderWithoutTheOptionCopiesSharedFrames) {
  SharedAllocation on;
  auto ta = ZmqTransport::Create(NodeId::Worker(0), ZmqTransportOptions());
  auto tb = ZmqTransport::Create(NodeId::Server(0), ZmqTransportOptions());
  ASSERT_TRUE(ta.ok() && tb.ok());
  ASSERT_TRUE((*ta)->AddPeer((*tb)->self(), (*tb)->endpoint()).ok());
  BlockingQueue<Message> inbox;
  ASSERT_TRUE((*ta)->Start([](Message&&) {}).ok());
  ASSERT_TRUE((*tb)->Start([&](Message&& m) { inbox.Push(std::move(m)); }).ok());
  Message m;
  m.header.set_command(proto::COMMAND_ECHO);
  m.frames.push_back(PatternFrame(1 << 19, 5.0f));
  ASSERT_TRUE((*ta)->Send((*tb)->self(), std::move(m)).ok());
  auto got = inbox.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(HasPattern(got->frames[0], 1 << 19, 5.0f));
  EXPECT_EQ((*ta)->shared_frames_sent(), 0);
  EXPECT_EQ((*tb)->shared_frames_received(), 0);
  (*ta)->Stop();
  (*tb)->Stop();
}

TEST(SharedTransportBadInputTest, BadDescriptorsAreDroppedAndTheNodeKeepsServing) {
  SharedAllocation on;
  auto server = ZmqTransport::Create(NodeId::Server(0), ZmqTransportOptions());
  ASSERT_TRUE(server.ok());
  (*server)->SetPeerPid(NodeId::Worker(0), static_cast<int>(getpid()));
  BlockingQueue<Message> inbox;
  ASSERT_TRUE((*server)->Start([&](Message&& m) { inbox.Push(std::move(m)); }).ok());
  Frame block_frame = PatternFrame(1 << 18, 1.0f);
  auto block = shared_frames::Find(block_frame.data(), block_frame.size());
  ASSERT_TRUE(block.has_value());

  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::routing_id, "worker:0");  // NULL mechanism: the connection's name
  raw.connect((*server)->endpoint());
  auto send = [&](const proto::Header& h, size_t frame_bytes) {
    std::string bytes = h.SerializeAsString();
    raw.send(zmq::buffer(bytes), zmq::send_flags::sndmore);
    std::string frame(frame_bytes, 'x');
    raw.send(zmq::buffer(frame), zmq::send_flags::none);
  };
  auto header = [&](uint64_t request_id) {
    proto::Header h;
    h.set_command(proto::COMMAND_ECHO);
    h.set_request_id(request_id);
    h.mutable_sender()->set_role(proto::ROLE_WORKER);
    h.set_sender_pid(static_cast<int>(getpid()));
    proto::SharedFrame* d = h.add_shared_frames();
    d->set_frame_index(0);
    d->set_token(1);
    d->set_fd(block->fd);
    d->set_block_id(block->block_id);
    d->set_inode(block->inode);
    d->set_block_bytes(block->bytes);
    d->set_offset(0);
    d->set_size(block_frame.size());
    return h;
  };
  int bad = 0;
  {
    proto::Header h = header(1);
    h.mutable_shared_frames(0)->set_offset(block->bytes - 8);  // runs past the block
    send(h, 0);
    ++bad;
  }
  {
    proto::Header h = header(2);
    h.mutable_shared_frames(0)->set_frame_index(3);  // no such frame
    send(h, 0);
    ++bad;
  }
  {
    send(header(3), 16);  // the named frame is not empty
    ++bad;
  }
  {
    proto::Header h = header(4);
    h.mutable_shared_frames(0)->set_inode(block->inode + 1);  // not that file
    h.mutable_shared_frames(0)->set_block_id(999999);
    send(h, 0);
    ++bad;
  }
  {
    proto::Header h = header(5);
    h.set_sender_pid(0);  // not worker:0's pid: refused before anything is opened
    h.mutable_shared_frames(0)->set_block_id(999998);
    send(h, 0);
  }
  send(header(6), 0);  // a good one: it is served
  auto got = inbox.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 6u);
  EXPECT_TRUE(HasPattern(got->frames[0], 1 << 18, 1.0f));
  EXPECT_EQ((*server)->malformed_messages(), bad);
  EXPECT_EQ((*server)->refused_messages(), 1);
  EXPECT_FALSE(inbox.PopFor(milliseconds(100)).has_value());
  (*server)->Stop();
}

}  // namespace
}  // namespace tessera

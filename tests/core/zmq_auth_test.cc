// Authentication on the wire (core/zmq_transport.h): CURVE keys from the job secret, the ZAP
// handler, the sender check and the shared-frame descriptor checks, with several transports and
// raw ZeroMQ sockets in one process. Every wait is bounded.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <zmq.hpp>

#include "core/auth.h"
#include "core/blocking_queue.h"
#include "core/shared_frames.h"
#include "core/zmq_transport.h"

namespace tessera {
namespace {

using std::chrono::milliseconds;

// How long a test waits to be sure that something is NOT delivered.
constexpr milliseconds kQuiet(300);

template <typename F>
bool Eventually(F done) {
  for (int i = 0; i < 500 && !done(); ++i) std::this_thread::sleep_for(milliseconds(10));
  return done();
}

auth::JobSecret Secret(uint8_t seed) {
  auth::JobSecret s;
  for (size_t i = 0; i < s.bytes.size(); ++i) s.bytes[i] = static_cast<uint8_t>(seed + 7 * i);
  return s;
}

ZmqTransportOptions CurveOptions(const auth::JobSecret& secret) {
  ZmqTransportOptions o;
  o.secret = secret;
  o.members = {NodeId::Scheduler(), NodeId::Server(0), NodeId::Worker(0), NodeId::Worker(1)};
  o.linger_ms = 0;
  return o;
}

Message Echo(uint64_t request_id) {
  Message m;
  m.header.set_command(proto::COMMAND_ECHO);
  m.header.set_request_id(request_id);
  m.frames.push_back(Frame::Copy("abc", 3));
  return m;
}

// A server:0 of the job of Secret(1); what it receives lands in inbox_.
class ZmqAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = ZmqTransport::Create(NodeId::Server(0), CurveOptions(Secret(1)));
    ASSERT_TRUE(t.ok()) << t.status().message();
    server_ = std::move(*t);
    ASSERT_TRUE(server_->Start([this](Message&& m) { inbox_.Push(std::move(m)); }).ok());
  }
  void TearDown() override { server_->Stop(); }

  // A member's transport (worker `rank` of the job of `secret`) that knows the server.
  std::unique_ptr<ZmqTransport> Member(int rank, const auth::JobSecret& secret) {
    auto t = ZmqTransport::Create(NodeId::Worker(rank), CurveOptions(secret));
    EXPECT_TRUE(t.ok());
    EXPECT_TRUE((*t)->AddPeer(server_->self(), server_->endpoint()).ok());
    EXPECT_TRUE((*t)->Start([](Message&&) {}).ok());
    return std::move(*t);
  }

  // A raw DEALER connected to the server as a CURVE client with `keys`.
  zmq::socket_t CurveDealer(const auth::KeyPair& keys, const auth::Key& server_key) {
    zmq::socket_t s(ctx_, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 0);
    EXPECT_EQ(zmq_setsockopt(s.handle(), ZMQ_CURVE_SERVERKEY, server_key.data(), 32), 0);
    EXPECT_EQ(zmq_setsockopt(s.handle(), ZMQ_CURVE_PUBLICKEY, keys.public_key.data(), 32), 0);
    EXPECT_EQ(zmq_setsockopt(s.handle(), ZMQ_CURVE_SECRETKEY, keys.secret_key.data(), 32), 0);
    s.connect(server_->endpoint());
    return s;
  }

  static void SendHeader(zmq::socket_t& s, const proto::Header& h, size_t frame_bytes = 3) {
    std::string bytes = h.SerializeAsString();
    s.send(zmq::buffer(bytes), zmq::send_flags::sndmore);
    std::string frame(frame_bytes, 'x');
    s.send(zmq::buffer(frame), zmq::send_flags::none);
  }

  static proto::Header EchoHeader(uint64_t request_id, const NodeId& sender) {
    proto::Header h;
    h.set_command(proto::COMMAND_ECHO);
    h.set_request_id(request_id);
    *h.mutable_sender() = sender.ToProto();
    return h;
  }

  zmq::context_t ctx_;
  std::unique_ptr<ZmqTransport> server_;
  BlockingQueue<Message> inbox_;
};

TEST_F(ZmqAuthTest, AMemberDeliversAndIsNamedByItsKey) {
  auto worker = Member(0, Secret(1));
  ASSERT_TRUE(worker->Send(server_->self(), Echo(1)).ok());
  auto got = inbox_.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 1u);
  EXPECT_EQ(got->header.sender().role(), proto::ROLE_WORKER);
  EXPECT_EQ(server_->auth_failures() + server_->refused_messages(), 0);
  worker->Stop();
}

TEST_F(ZmqAuthTest, APeerWithAnotherJobsSecretCannotDeliver) {
  auto stranger = Member(0, Secret(2));  // a whole job's worth of keys, but not this job's
  for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(stranger->Send(server_->self(), Echo(i)).ok());
  EXPECT_FALSE(inbox_.PopFor(kQuiet).has_value());
  stranger->Stop();
  // The server keeps serving its own job.
  auto worker = Member(1, Secret(1));
  ASSERT_TRUE(worker->Send(server_->self(), Echo(99)).ok());
  auto got = inbox_.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 99u);
  worker->Stop();
}

TEST_F(ZmqAuthTest, APeerWithoutAnyKeyCannotDeliver) {
  zmq::socket_t raw(ctx_, zmq::socket_type::dealer);  // the NULL mechanism
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::routing_id, "worker:0");
  raw.connect(server_->endpoint());
  SendHeader(raw, EchoHeader(7, NodeId::Worker(0)));
  proto::AbortNotice abort;
  abort.set_reason("forged");
  proto::Header h = EchoHeader(8, NodeId::Scheduler());
  h.set_command(proto::COMMAND_ABORT);
  SendHeader(raw, h);
  EXPECT_FALSE(inbox_.PopFor(kQuiet).has_value());
}

TEST_F(ZmqAuthTest, AClientKeyThatIsNoMembersIsRefusedByZapAndCounted) {
  // Even knowing the server's public key, a key pair of one's own is not admitted.
  auth::KeyPair own;
  char pub[41], sec[41];
  ASSERT_EQ(zmq_curve_keypair(pub, sec), 0);
  ASSERT_NE(zmq_z85_decode(own.public_key.data(), pub), nullptr);
  ASSERT_NE(zmq_z85_decode(own.secret_key.data(), sec), nullptr);
  zmq::socket_t raw = CurveDealer(own, auth::NodeKeyPair(Secret(1), NodeId::Server(0)).public_key);
  SendHeader(raw, EchoHeader(7, NodeId::Worker(0)));
  EXPECT_TRUE(Eventually([&] { return server_->auth_failures() >= 1; }));
  EXPECT_FALSE(inbox_.PopFor(kQuiet).has_value());
}

TEST_F(ZmqAuthTest, AForgedSenderOnAMembersConnectionIsRefusedAndCounted) {
  // worker:1's own key, claiming to be worker:0 and the scheduler; then telling the truth.
  zmq::socket_t raw = CurveDealer(auth::NodeKeyPair(Secret(1), NodeId::Worker(1)),
                                  auth::NodeKeyPair(Secret(1), NodeId::Server(0)).public_key);
  SendHeader(raw, EchoHeader(1, NodeId::Worker(0)));
  proto::Header abort = EchoHeader(2, NodeId::Scheduler());
  abort.set_command(proto::COMMAND_ABORT);
  SendHeader(raw, abort);
  proto::Header release = EchoHeader(3, NodeId::Worker(0));
  release.set_command(proto::COMMAND_RELEASE);
  SendHeader(raw, release, 8);
  SendHeader(raw, EchoHeader(4, NodeId::Worker(1)));
  auto got = inbox_.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 4u);  // the messages before it were dropped
  EXPECT_EQ(server_->refused_messages(), 3);
  EXPECT_EQ(server_->malformed_messages(), 0);
}

TEST_F(ZmqAuthTest, SharedFrameDescriptorsAreMappedOnlyFromTheSendersPidAndItsBlocks) {
  shared_frames::Enable(true);
  void* out = nullptr;
  Frame block_frame = Frame::Allocate(size_t{1} << 20, &out);
  std::memset(out, 0x5a, block_frame.size());
  shared_frames::Enable(false);
  auto block = shared_frames::Find(block_frame.data(), block_frame.size());
  ASSERT_TRUE(block.has_value());
  // A memfd of another name, with a plausible inode and size: not one of Tessera's blocks.
  const int other = memfd_create("not-tessera", MFD_CLOEXEC);
  ASSERT_GE(other, 0);
  ASSERT_EQ(ftruncate(other, static_cast<off_t>(block->bytes)), 0);
  struct stat st;
  ASSERT_EQ(fstat(other, &st), 0);

  zmq::socket_t raw = CurveDealer(auth::NodeKeyPair(Secret(1), NodeId::Worker(0)),
                                  auth::NodeKeyPair(Secret(1), NodeId::Server(0)).public_key);
  auto header = [&](uint64_t request_id, int pid, int fd, uint64_t block_id, uint64_t inode) {
    proto::Header h = EchoHeader(request_id, NodeId::Worker(0));
    h.set_sender_pid(pid);
    proto::SharedFrame* d = h.add_shared_frames();
    d->set_frame_index(0);
    d->set_token(request_id);
    d->set_fd(fd);
    d->set_block_id(block_id);
    d->set_inode(inode);
    d->set_block_bytes(block->bytes);
    d->set_offset(0);
    d->set_size(block_frame.size());
    return h;
  };
  const int pid = static_cast<int>(getpid());
  // No pid known for worker:0 yet (not on this host, as far as the server knows): refused.
  SendHeader(raw, header(1, pid, block->fd, block->block_id, block->inode), 0);
  EXPECT_FALSE(inbox_.PopFor(kQuiet).has_value());
  EXPECT_EQ(server_->refused_messages(), 1);
  server_->SetPeerPid(NodeId::Worker(0), pid);
  // Another process's pid (the parent's): refused.
  SendHeader(raw, header(2, static_cast<int>(getppid()), block->fd, 77, block->inode), 0);
  // The right pid, but a file that is not a Tessera block: refused as malformed.
  SendHeader(raw, header(3, pid, other, 78, static_cast<uint64_t>(st.st_ino)), 0);
  // The sender's own block: mapped.
  SendHeader(raw, header(4, pid, block->fd, block->block_id, block->inode), 0);
  auto got = inbox_.PopFor(milliseconds(5000));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->header.request_id(), 4u);
  ASSERT_EQ(got->frames.size(), 1u);
  EXPECT_EQ(got->frames[0].as<unsigned char>()[12345], 0x5a);
  EXPECT_EQ(server_->refused_messages(), 2);
  EXPECT_EQ(server_->malformed_messages(), 1);
  close(other);
}

}  // namespace
}  // namespace tessera

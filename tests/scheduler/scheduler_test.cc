#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/cluster.h"
#include "core/inproc_transport.h"
#include "tests/testing/fault_env.h"

namespace tessera::scheduler {
namespace {

using std::chrono::milliseconds;

// A scheduler for 2 servers + 2 workers and RpcNodes for every other node, in one process.
class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(2, 2, milliseconds(10000)); }
  void Build(int servers, int workers, milliseconds register_timeout,
             milliseconds heartbeat_timeout = milliseconds(0)) {
    SchedulerOptions options;
    options.heartbeat_timeout = heartbeat_timeout;
    options.env = &env_;
    options.num_servers = servers;
    options.num_workers = workers;
    options.register_timeout = register_timeout;
    options.shutdown_timeout = milliseconds(5000);
    AddNode(NodeId::Scheduler());
    scheduler_ = std::make_unique<Scheduler>(options, rpcs_[0].get());
    ASSERT_TRUE(scheduler_->Start().ok());
    for (int s = 0; s < servers; ++s) AddNode(NodeId::Server(s));
    for (int w = 0; w < workers; ++w) AddNode(NodeId::Worker(w));
  }
  void AddNode(NodeId id) {
    transports_.push_back(std::make_unique<InProcTransport>(&hub_, id));
    rpcs_.push_back(std::make_unique<RpcNode>(transports_.back().get()));
  }
  void TearDown() override {
    for (auto& r : rpcs_) r->Stop();
  }
  RpcNode& node(size_t i) { return *rpcs_[i]; }
  // Registers nodes [first, last) concurrently; returns their results.
  std::vector<StatusOr<ClusterView>> RegisterAll(size_t first, size_t last) {
    std::vector<StatusOr<ClusterView>> views(last - first, Status::Unknown("not run"));
    std::vector<std::thread> threads;
    for (size_t i = first; i < last; ++i) {
      threads.emplace_back(
          [&, i] { views[i - first] = RegisterWithScheduler(node(i), milliseconds(5000)); });
    }
    for (auto& t : threads) t.join();
    return views;
  }
  std::future<StatusOr<Message>> Reduce(size_t i, uint64_t round, std::vector<double> v,
                                        proto::ReduceOp op = proto::REDUCE_OP_SUM) {
    proto::ReduceRequest r;
    r.set_round(round);
    r.set_op(op);
    for (double x : v) r.add_values(x);
    return node(i).Call(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_REDUCE, r));
  }

  // A heartbeat from node i at `step`, answered.
  Status Heartbeat(size_t i, int64_t step) {
    proto::Heartbeat beat;
    beat.set_step(step);
    return node(i)
        .CallAndWait(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_HEARTBEAT, beat),
                     milliseconds(5000))
        .status();
  }

  testing::FaultEnv env_;  // the liveness clock
  InProcHub hub_;
  std::vector<std::unique_ptr<InProcTransport>> transports_;
  std::vector<std::unique_ptr<RpcNode>> rpcs_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, EveryNodeGetsTheSameClusterOnceAllHaveRegistered) {
  for (size_t i = 1; i < rpcs_.size(); ++i) ASSERT_TRUE(node(i).Start(nullptr).ok());
  auto views = RegisterAll(1, rpcs_.size());
  for (auto& v : views) {
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->num_servers, 2);
    EXPECT_EQ(v->num_workers, 2);
    EXPECT_EQ(v->shard_map.num_servers(), 2);
    EXPECT_EQ(v->shard_map.ranges()[1].begin, kNumSlots / 2);
  }
}

TEST_F(SchedulerTest, NodesOutsideTheJobAndDuplicatesAreRefused) {
  InProcTransport stranger_t(&hub_, NodeId::Worker(5));
  RpcNode stranger(&stranger_t);
  ASSERT_TRUE(stranger.Start(nullptr).ok());
  auto refused = RegisterWithScheduler(stranger, milliseconds(2000));
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("worker:5"), std::string::npos);
  stranger.Stop();

  ASSERT_TRUE(node(1).Start(nullptr).ok());
  proto::RegisterRequest again;
  *again.mutable_node() = NodeId::Server(0).ToProto();
  auto first =
      node(1).Call(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_REGISTER, again));
  auto second = node(1).CallAndWait(
      NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_REGISTER, again), milliseconds(2000));
  EXPECT_EQ(second.status().code(), StatusCode::kAlreadyExists);
}

TEST_F(SchedulerTest, ReduceSumsAndMaxesOverAllWorkers) {
  for (size_t i = 1; i < rpcs_.size(); ++i) ASSERT_TRUE(node(i).Start(nullptr).ok());
  ASSERT_EQ(RegisterAll(1, rpcs_.size()).size(), 4u);
  const size_t w0 = 3, w1 = 4;
  auto a = Reduce(w1, 0, {0.25, 2.0});
  auto b = Reduce(w0, 0, {1.0, -5.0});
  for (auto* f : {&a, &b}) {
    auto reply = RpcNode::Wait(*f, milliseconds(5000), "reduce");
    ASSERT_TRUE(reply.ok());
    proto::ReduceReply body;
    ASSERT_TRUE(ParseControlBody(*reply, &body).ok());
    ASSERT_EQ(body.values_size(), 2);
    EXPECT_EQ(body.values(0), 1.25);
    EXPECT_EQ(body.values(1), -3.0);
  }
  auto c = Reduce(w0, 1, {3.0}, proto::REDUCE_OP_MAX);
  auto d = Reduce(w1, 1, {7.0}, proto::REDUCE_OP_MAX);
  auto reply = RpcNode::Wait(c, milliseconds(5000), "reduce");
  ASSERT_TRUE(reply.ok());
  proto::ReduceReply body;
  ASSERT_TRUE(ParseControlBody(*reply, &body).ok());
  EXPECT_EQ(body.values(0), 7.0);
  ASSERT_TRUE(RpcNode::Wait(d, milliseconds(5000), "reduce").ok());
}

TEST_F(SchedulerTest, AbortFromAWorkerFailsWaitingReducesAndRun) {
  for (size_t i = 1; i < rpcs_.size(); ++i) ASSERT_TRUE(node(i).Start(nullptr).ok());
  ASSERT_EQ(RegisterAll(1, rpcs_.size()).size(), 4u);
  auto waiting = Reduce(3, 0, {1.0});
  proto::AbortNotice notice;
  notice.set_reason("worker:1: train.txt:4: bad rating");
  notice.set_code(static_cast<int>(StatusCode::kInvalidArgument));
  ASSERT_TRUE(
      node(4).Send(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_ABORT, notice)).ok());
  auto reply = RpcNode::Wait(waiting, milliseconds(5000), "reduce");
  EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument);
  Status run = scheduler_->Run();
  EXPECT_EQ(run.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(run.message().find("train.txt:4"), std::string::npos);
}

// A one-process job's node whose thread could not start has no transport to report on: the
// launcher's Abort ends registration at once (not after --register-timeout) and answers the
// nodes already waiting in it.
TEST_F(SchedulerTest, AbortFromTheLauncherEndsRegistrationAtOnceAndAnswersTheWaitingNodes) {
  for (size_t i = 1; i < rpcs_.size(); ++i) ASSERT_TRUE(node(i).Start(nullptr).ok());
  proto::RegisterRequest body;
  *body.mutable_node() = NodeId::Server(0).ToProto();
  auto waiting =
      node(1).Call(NodeId::Scheduler(), MakeControlMessage(proto::COMMAND_REGISTER, body));
  const Status failure = Status::FailedPrecondition("worker:1: cannot start a thread");
  scheduler_->Abort(failure);
  EXPECT_EQ(RpcNode::Wait(waiting, milliseconds(5000), "register").status().code(),
            StatusCode::kFailedPrecondition);
  const auto start = std::chrono::steady_clock::now();
  Status run = scheduler_->Run();  // the register timeout is 10 s
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(5000));
  EXPECT_EQ(run.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(run.message().find("worker:1: cannot start a thread"), std::string::npos);
  // A later abort does not replace the first reason.
  scheduler_->Abort(Status::Aborted("later"));
  EXPECT_EQ(scheduler_->Run().message(), run.message());
}

TEST(SchedulerTimeoutTest, MissingNodesAreNamedWhenRegistrationTimesOut) {
  InProcHub hub;
  InProcTransport t(&hub, NodeId::Scheduler());
  RpcNode rpc(&t);
  SchedulerOptions options;
  options.num_servers = 1;
  options.num_workers = 1;
  options.register_timeout = milliseconds(100);
  Scheduler scheduler(options, &rpc);
  ASSERT_TRUE(scheduler.Start().ok());
  Status s = scheduler.Run();
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("server:0"), std::string::npos);
  EXPECT_NE(s.message().find("worker:0"), std::string::npos);
  rpc.Stop();
}

TEST_F(SchedulerTest, DoneFromEveryWorkerShutsServersDownAndReleasesWorkers) {
  std::atomic<int> shutdowns{0};
  for (size_t i = 1; i <= 2; ++i) {
    RpcNode* server = &node(i);
    ASSERT_TRUE(server
                    ->Start([server, &shutdowns](Message&& m) {
                      if (m.header.command() == proto::COMMAND_SHUTDOWN) {
                        ++shutdowns;
                        (void)server->Reply(m, Message());
                      }
                    })
                    .ok());
  }
  for (size_t i = 3; i <= 4; ++i) ASSERT_TRUE(node(i).Start(nullptr).ok());
  ASSERT_EQ(RegisterAll(1, rpcs_.size()).size(), 4u);
  std::thread run([&] { EXPECT_TRUE(scheduler_->Run().ok()); });
  std::vector<std::future<StatusOr<Message>>> done;
  for (size_t i = 3; i <= 4; ++i) {
    Message m;
    m.header.set_command(proto::COMMAND_DONE);
    done.push_back(node(i).Call(NodeId::Scheduler(), std::move(m)));
  }
  for (auto& d : done) EXPECT_TRUE(RpcNode::Wait(d, milliseconds(5000), "done").ok());
  run.join();
  EXPECT_EQ(shutdowns.load(), 2);
}

class SchedulerLivenessTest : public SchedulerTest {
 protected:
  void SetUp() override {
    env_.UseManualClock();
    Build(1, 2, milliseconds(10000), /*heartbeat_timeout=*/milliseconds(6000));
  }
};

TEST_F(SchedulerLivenessTest, NodeSilentLongerThanTheTimeoutOnTheClockIsLost) {
  for (size_t i = 1; i < rpcs_.size(); ++i) ASSERT_TRUE(node(i).Start(nullptr).ok());
  ASSERT_EQ(RegisterAll(1, rpcs_.size()).size(), 3u);
  const size_t server = 1, worker0 = 2, worker1 = 3;
  // 5 s of silence is within the timeout: every heartbeat is answered.
  env_.AdvanceClock(std::chrono::seconds(5));
  for (size_t i : {server, worker0, worker1}) {
    EXPECT_TRUE(Heartbeat(i, 12).ok());
  }
  // Worker 1 falls silent; the others go on for 6.5 s, just past the timeout.
  env_.AdvanceClock(std::chrono::milliseconds(3500));
  for (size_t i : {server, worker0}) {
    EXPECT_TRUE(Heartbeat(i, 14).ok());
  }
  auto waiting = Reduce(worker0, 0, {1.0});
  env_.AdvanceClock(std::chrono::milliseconds(3000));
  ASSERT_TRUE(Heartbeat(server, 15).ok());
  // The heartbeat that found worker:1 lost ended the job: waiting calls fail with the reason.
  auto reduce = RpcNode::Wait(waiting, milliseconds(5000), "reduce");
  EXPECT_EQ(reduce.status().code(), StatusCode::kUnavailable);
  Status run = scheduler_->Run();
  EXPECT_EQ(run.code(), StatusCode::kUnavailable);
  EXPECT_NE(run.message().find("lost worker:1"), std::string::npos) << run.message();
  EXPECT_NE(run.message().find("no heartbeat for 6.5 s"), std::string::npos) << run.message();
  EXPECT_NE(run.message().find("stopped at step 15"), std::string::npos) << run.message();
  EXPECT_EQ(run.message().find("worker:0"), std::string::npos) << run.message();
}

}  // namespace
}  // namespace tessera::scheduler

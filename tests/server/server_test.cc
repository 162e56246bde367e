#include "server/server.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>

#include "core/inproc_transport.h"
#include "core/logging.h"
#include "kernels/optimizer_math.h"

namespace tessera::server {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kWait(10000);

// One server (in-process transport) and `num_workers` worker RpcNodes that talk to it directly.
class ServerHarness {
 public:
  ServerHarness(int num_workers, int shard_threads, bool deterministic, int dim = 3,
                kernels::OptimizerKind kind = kernels::OptimizerKind::kAdagrad,
                int threads_per_shard = 1) {
    server_transport_ = std::make_unique<InProcTransport>(&hub_, NodeId::Server(0));
    server_rpc_ = std::make_unique<RpcNode>(server_transport_.get());
    for (uint32_t t = 0; t < 2; ++t) {
      TableOptions table;
      table.table_id = t;
      table.dim = dim;
      table.seed = 11;
      table.init_std = 0.1f;
      table.optimizer.kind = kind;
      table.optimizer.lr = 0.1f;
      options_.tables.push_back(table);
    }
    options_.num_shard_threads = shard_threads;
    options_.threads_per_shard = threads_per_shard;
    options_.deterministic = deterministic;
    auto server = Server::Create(options_, 0, server_rpc_.get());
    TS_CHECK(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    TS_CHECK_OK(server_rpc_->Start([this](Message&& m) { server_->HandleRequest(std::move(m)); }));
    TS_CHECK_OK(server_->Start(ShardMap::Even(1, 1), num_workers));
    for (int w = 0; w < num_workers; ++w) {
      worker_transports_.push_back(std::make_unique<InProcTransport>(&hub_, NodeId::Worker(w)));
      workers_.push_back(std::make_unique<RpcNode>(worker_transports_.back().get()));
      TS_CHECK_OK(workers_.back()->Start(nullptr));
    }
  }
  ~ServerHarness() {
    for (auto& w : workers_) w->Stop();
    server_rpc_->Stop();
    server_->Stop();
  }

  static Message KeyMessage(proto::Command command, uint32_t table, std::vector<uint64_t> keys,
                            int64_t clock) {
    Message m;
    m.header.set_command(command);
    m.header.set_clock(clock);
    m.header.set_dtype(proto::DTYPE_FLOAT32);
    auto* t = m.header.add_tables();
    t->set_table_id(table);
    t->set_num_keys(keys.size());
    m.frames.push_back(Frame::FromVector(std::move(keys)));
    return m;
  }
  std::future<StatusOr<Message>> Pull(int worker, uint32_t table, std::vector<uint64_t> keys,
                                      int64_t clock, uint32_t flags = 0) {
    Message m = KeyMessage(proto::COMMAND_PULL, table, std::move(keys), clock);
    m.header.set_flags(flags);
    return workers_[worker]->Call(NodeId::Server(0), std::move(m));
  }
  std::future<StatusOr<Message>> Push(int worker, uint32_t table, std::vector<uint64_t> keys,
                                      std::vector<float> grads, int64_t clock) {
    Message m = KeyMessage(proto::COMMAND_PUSH, table, std::move(keys), clock);
    m.frames.push_back(Frame::FromVector(std::move(grads)));
    return workers_[worker]->Call(NodeId::Server(0), std::move(m));
  }
  StatusOr<std::vector<float>> PullValues(int worker, uint32_t table, std::vector<uint64_t> keys,
                                          int64_t clock, uint32_t flags = 0) {
    auto f = Pull(worker, table, std::move(keys), clock, flags);
    TS_ASSIGN_OR_RETURN(Message reply, RpcNode::Wait(f, kWait, "pull"));
    if (reply.frames.size() != 1) return Status::DataLoss("no values");
    const float* v = reply.frames[0].as<float>();
    return std::vector<float>(v, v + reply.frames[0].count<float>());
  }
  Status PushAndWait(int worker, uint32_t table, std::vector<uint64_t> keys,
                     std::vector<float> grads, int64_t clock) {
    auto ack = Push(worker, table, std::move(keys), std::move(grads), clock);
    return RpcNode::Wait(ack, kWait, "push").status();
  }
  // A table built like the server's, for initial values (as on any other server).
  std::vector<float> InitialRow(uint32_t table, uint64_t key) {
    auto t = EmbeddingTable::Create(options_.tables[table]);
    std::vector<float> row(options_.tables[table].dim);
    (*t)->InitialWeights(key, row.data());
    return row;
  }

  InProcHub hub_;
  ServerOptions options_;
  std::unique_ptr<Transport> server_transport_;
  std::unique_ptr<RpcNode> server_rpc_;
  std::unique_ptr<Server> server_;
  std::vector<std::unique_ptr<Transport>> worker_transports_;
  std::vector<std::unique_ptr<RpcNode>> workers_;
};

TEST(ServerTest, PullOfUnseenKeyReturnsItsDeterministicInitialRow) {
  ServerHarness h(1, 1, false);
  auto values = h.PullValues(0, 1, {42, 7}, 0);
  ASSERT_TRUE(values.ok()) << values.status().ToString();
  std::vector<float> expect = h.InitialRow(1, 42), second = h.InitialRow(1, 7);
  expect.insert(expect.end(), second.begin(), second.end());
  EXPECT_EQ(*values, expect);
  EXPECT_NE(h.server_->PeekRow(1, 42), nullptr);  // created on first touch
}

TEST(ServerTest, NoCreatePullAnswersInitialValuesWithoutCreatingRows) {
  ServerHarness h(1, 1, false);
  auto values = h.PullValues(0, 0, {5}, 0, proto::FLAG_NO_CREATE);
  ASSERT_TRUE(values.ok());
  EXPECT_EQ(*values, h.InitialRow(0, 5));
  EXPECT_EQ(h.server_->PeekRow(0, 5), nullptr);
}

TEST(ServerTest, PushAppliesAdagradToTheRow) {
  ServerHarness h(1, 1, false);
  std::vector<float> w = h.InitialRow(0, 9);
  ASSERT_TRUE(h.PushAndWait(0, 0, {9}, {0.5f, -1.0f, 2.0f}, 0).ok());
  auto values = h.PullValues(0, 0, {9}, 1);
  ASSERT_TRUE(values.ok());
  // Adagrad from a zero accumulator: acc = g^2, w -= lr * g / (|g| + eps) = w - lr * sign(g).
  const float g[3] = {0.5f, -1.0f, 2.0f};
  for (int j = 0; j < 3; ++j) {
    float expect = w[j] - 0.1f * g[j] / (std::sqrt(g[j] * g[j]) + 1e-8f);
    EXPECT_FLOAT_EQ((*values)[j], expect) << j;
  }
}

// A pull copies rows in 16-float pieces and then float by float (shard.cc CopyRow): rows of
// every width come back whole, beside new keys' initial rows.
TEST(ServerTest, PulledRowsOfEveryWidthAreTheUpdatedRows) {
  for (int dim : {1, 15, 16, 17, 33, 129}) {
    ServerHarness h(1, 1, false, dim);
    std::vector<float> w = h.InitialRow(0, 9);
    std::vector<float> g(dim);
    for (int j = 0; j < dim; ++j) g[j] = (j % 2 == 0 ? 0.5f : -1.0f) * static_cast<float>(j + 1);
    ASSERT_TRUE(h.PushAndWait(0, 0, {9}, g, 0).ok());
    auto values = h.PullValues(0, 0, {4, 9}, 1);
    ASSERT_TRUE(values.ok());
    ASSERT_EQ(values->size(), 2u * dim);
    EXPECT_EQ(std::vector<float>(values->begin(), values->begin() + dim), h.InitialRow(0, 4));
    for (int j = 0; j < dim; ++j) {
      const float expect = w[j] - 0.1f * g[j] / (std::sqrt(g[j] * g[j]) + 1e-8f);
      EXPECT_FLOAT_EQ((*values)[dim + j], expect) << "dim " << dim << " position " << j;
    }
  }
}

TEST(ServerTest, MalformedRequestGetsAnErrorReplyAndTheServerKeepsServing) {
  ServerHarness h(1, 2, false);
  Message bad = ServerHarness::KeyMessage(proto::COMMAND_PULL, 0, {1, 2, 3}, 0);
  bad.header.mutable_tables(0)->set_num_keys(5);  // header claims more keys than the frame has
  auto reply = h.workers_[0]->CallAndWait(NodeId::Server(0), std::move(bad), kWait);
  EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reply.status().message().find("key frame"), std::string::npos);

  Message unknown_table = ServerHarness::KeyMessage(proto::COMMAND_PULL, 7, {1}, 0);
  EXPECT_EQ(h.workers_[0]
                ->CallAndWait(NodeId::Server(0), std::move(unknown_table), kWait)
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  Message odd;
  odd.header.set_command(proto::COMMAND_REDUCE);
  EXPECT_FALSE(h.workers_[0]->CallAndWait(NodeId::Server(0), std::move(odd), kWait).ok());

  EXPECT_TRUE(h.PullValues(0, 0, {1, 2, 3}, 0).ok());
  EXPECT_EQ(h.server_->stats().rejected, 3);
}

TEST(ServerTest, KeysOfAnotherServerAreRefused) {
  InProcHub hub;
  InProcTransport st(&hub, NodeId::Server(1)), wt(&hub, NodeId::Worker(0));
  RpcNode server_rpc(&st), worker(&wt);
  ServerOptions options;
  TableOptions table;
  table.dim = 2;
  options.tables.push_back(table);
  auto server = Server::Create(options, 1, &server_rpc);
  ASSERT_TRUE(server.ok());
  ASSERT_TRUE(server_rpc.Start([&](Message&& m) { (*server)->HandleRequest(std::move(m)); }).ok());
  ShardMap map = ShardMap::Even(2, 1);
  ASSERT_TRUE((*server)->Start(map, 1).ok());
  ASSERT_TRUE(worker.Start(nullptr).ok());
  uint64_t foreign = 0;
  while (map.ServerOf(0, foreign) != 0) ++foreign;
  auto reply = worker.CallAndWait(
      NodeId::Server(1), ServerHarness::KeyMessage(proto::COMMAND_PULL, 0, {foreign}, 0), kWait);
  EXPECT_EQ(reply.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(reply.status().message().find("belongs to server:0"), std::string::npos);
  worker.Stop();
  server_rpc.Stop();
}

TEST(ServerTest, BspPullWaitsForEveryWorkersPushOfThePreviousStep) {
  ServerHarness h(2, 1, false);
  auto push0 = h.Push(0, 0, {1}, {1, 1, 1}, 0);
  auto early_pull = h.Pull(0, 0, {1}, 1);  // step 1 needs both pushes of step 0
  ASSERT_TRUE(RpcNode::Wait(push0, kWait, "push").ok());
  EXPECT_EQ(early_pull.wait_for(milliseconds(100)), std::future_status::timeout);
  auto push1 = h.Push(1, 0, {1}, {1, 1, 1}, 0);
  auto pulled = RpcNode::Wait(early_pull, kWait, "pull");
  ASSERT_TRUE(pulled.ok());
  ASSERT_TRUE(RpcNode::Wait(push1, kWait, "push").ok());
  // Both pushes were applied before the pull was answered.
  std::vector<float> after(pulled->frames[0].as<float>(), pulled->frames[0].as<float>() + 3);
  auto again = h.PullValues(1, 0, {1}, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(after, *again);
  EXPECT_NE(after, h.InitialRow(0, 1));
}

// FLAG_AHEAD: the worker vouches that step c reads none of step c - 1's rows. With one worker the
// pull is answered before the push of step c - 1, with the rows as they are (the same as after
// that push); a pull two steps ahead, or one not flagged, waits for the push as before.
TEST(ServerTest, APullAheadIsAnsweredBeforeThePushOfTheStepBeforeInAOneWorkerJob) {
  for (int shard_threads : {1, 2}) {
    ServerHarness h(1, shard_threads, true);
    ASSERT_TRUE(h.PullValues(0, 0, {1, 2}, 0).ok());
    auto ahead = h.Pull(0, 0, {3, 4}, 1, proto::FLAG_AHEAD);
    auto plain = h.Pull(0, 0, {5}, 1);
    auto two_ahead = h.Pull(0, 0, {6}, 2, proto::FLAG_AHEAD);
    auto answered = RpcNode::Wait(ahead, kWait, "pull ahead");
    ASSERT_TRUE(answered.ok()) << answered.status().ToString();
    const float* v = answered->frames[0].as<float>();
    EXPECT_EQ(std::vector<float>(v, v + 3), h.InitialRow(0, 3));
    EXPECT_EQ(std::vector<float>(v + 3, v + 6), h.InitialRow(0, 4));
    EXPECT_EQ(plain.wait_for(milliseconds(100)), std::future_status::timeout);
    EXPECT_EQ(two_ahead.wait_for(milliseconds(0)), std::future_status::timeout);
    // The push of step 0 releases the plain pull of step 1 and makes step 2 one step ahead.
    ASSERT_TRUE(h.PushAndWait(0, 0, {1, 2}, {1, 1, 1, 1, 1, 1}, 0).ok());
    EXPECT_TRUE(RpcNode::Wait(plain, kWait, "pull").ok());
    EXPECT_TRUE(RpcNode::Wait(two_ahead, kWait, "pull two ahead").ok());
    auto row1 = h.PullValues(0, 0, {1}, 1);
    ASSERT_TRUE(row1.ok());
    EXPECT_NE(*row1, h.InitialRow(0, 1)) << "the push of step 0 was not applied";
  }
}

TEST(ServerTest, APullAheadWaitsForEveryPushOfTheStepBeforeInAJobOfTwoWorkers) {
  ServerHarness h(2, 1, false);  // each push is applied (and acknowledged) on arrival
  auto ahead = h.Pull(0, 0, {3}, 1, proto::FLAG_AHEAD);
  EXPECT_EQ(ahead.wait_for(milliseconds(100)), std::future_status::timeout);
  ASSERT_TRUE(h.PushAndWait(0, 0, {1}, {1, 1, 1}, 0).ok());
  EXPECT_EQ(ahead.wait_for(milliseconds(50)), std::future_status::timeout);
  ASSERT_TRUE(h.PushAndWait(1, 0, {2}, {1, 1, 1}, 0).ok());
  EXPECT_TRUE(RpcNode::Wait(ahead, kWait, "pull ahead").ok());
}

// Steps of disjoint keys, each pulled ahead of the push before it, end with the rows of the same
// steps in plain BSP order, bit for bit: the push of a step finds its own pull's rows (two
// cached per worker), whatever pull came in between, and one whose keys differ from its pull's
// looks them up.
TEST(ServerTest, PullsAheadGiveTheRowsOfPlainBspOrder) {
  constexpr int kDim = 8;
  ServerHarness ahead(1, 1, true, kDim), plain(1, 1, true, kDim);
  std::mt19937_64 rng(9);
  std::normal_distribution<float> grad(0.0f, 0.5f);
  // Step s reads keys of parity s % 2: consecutive steps are disjoint.
  std::vector<std::vector<uint64_t>> keys(6);
  for (size_t s = 0; s < keys.size(); ++s) {
    for (uint64_t k = 0; k < 300; ++k) keys[s].push_back((rng() % 500) * 2 + s % 2);
    std::sort(keys[s].begin(), keys[s].end());
    keys[s].erase(std::unique(keys[s].begin(), keys[s].end()), keys[s].end());
    std::shuffle(keys[s].begin(), keys[s].end(), rng);
  }
  auto pending = ahead.Pull(0, 0, keys[0], 0);
  for (size_t s = 0; s < keys.size(); ++s) {
    auto rows = RpcNode::Wait(pending, kWait, "pull");
    ASSERT_TRUE(rows.ok()) << rows.status().ToString();
    if (s + 1 < keys.size()) pending = ahead.Pull(0, 0, keys[s + 1], s + 1, proto::FLAG_AHEAD);
    auto reference = plain.PullValues(0, 0, keys[s], s);
    ASSERT_TRUE(reference.ok());
    const float* v = rows->frames[0].as<float>();
    ASSERT_EQ(std::vector<float>(v, v + reference->size()), *reference) << "step " << s;
    std::vector<uint64_t> push_keys = keys[s];
    if (s == 3) std::reverse(push_keys.begin(), push_keys.end());  // not the pull's key order
    std::vector<float> grads(push_keys.size() * kDim);
    for (float& g : grads) g = grad(rng);
    ASSERT_TRUE(ahead.PushAndWait(0, 0, push_keys, grads, s).ok());
    ASSERT_TRUE(plain.PushAndWait(0, 0, push_keys, grads, s).ok());
  }
  std::vector<uint64_t> all(1000);
  for (uint64_t k = 0; k < all.size(); ++k) all[k] = k;
  auto a = ahead.PullValues(0, 0, all, keys.size(), proto::FLAG_NO_CREATE);
  auto b = plain.PullValues(0, 0, all, keys.size(), proto::FLAG_NO_CREATE);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

// A pull parked for a step that never completes (a worker stopped) is answered when the server
// stops, so no worker waits for a stopped server.
TEST(ServerTest, APullParkedAtAPlainStopIsUnavailable) {
  ServerHarness h(2, 1, false);
  auto parked = h.Pull(0, 0, {1}, 1);
  EXPECT_EQ(parked.wait_for(milliseconds(100)), std::future_status::timeout);
  h.server_->Stop();
  auto answer = RpcNode::Wait(parked, kWait, "pull");
  EXPECT_EQ(answer.status().code(), StatusCode::kUnavailable) << answer.status().ToString();
}

TEST(ServerTest, PushForAClosedStepIsRefused) {
  ServerHarness h(1, 1, false);
  ASSERT_TRUE(h.PushAndWait(0, 0, {1}, {1, 1, 1}, 0).ok());
  auto stale = h.Push(0, 0, {1}, {1, 1, 1}, 0);
  EXPECT_EQ(RpcNode::Wait(stale, kWait, "push").status().code(), StatusCode::kFailedPrecondition);
}

// BSP: a push is applied only at the step its worker is at (a forged or replayed push with any
// other clock is refused with an error to its sender, and the rows stay as they were).
TEST(ServerTest, PushWithAClockOtherThanTheWorkersNextStepIsRefusedAndNotApplied) {
  for (bool deterministic : {false, true}) {
    ServerHarness h(2, 2, deterministic);
    const std::vector<float> initial = h.InitialRow(0, 9);
    for (int64_t clock : {int64_t{1}, int64_t{5}, int64_t{1} << 40}) {
      auto refused = h.PushAndWait(0, 0, {9}, {1, 1, 1}, clock);
      EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << clock;
      EXPECT_NE(refused.message().find("whose next step is 0"), std::string::npos)
          << refused.message();
    }
    auto values = h.PullValues(0, 0, {9}, 0);
    ASSERT_TRUE(values.ok());
    EXPECT_EQ(*values, initial);
    // Step 0 from both workers, then step 0 again (a replay) is refused; step 1 is accepted.
    auto a = h.Push(0, 0, {9}, {1, 1, 1}, 0);
    auto b = h.Push(1, 0, {9}, {1, 1, 1}, 0);
    ASSERT_TRUE(RpcNode::Wait(a, kWait, "push").ok());
    ASSERT_TRUE(RpcNode::Wait(b, kWait, "push").ok());
    EXPECT_EQ(h.PushAndWait(1, 0, {9}, {1, 1, 1}, 0).code(), StatusCode::kFailedPrecondition);
    EXPECT_EQ(h.PushAndWait(1, 0, {9}, {1, 1, 1}, 2).code(), StatusCode::kFailedPrecondition);
    auto c = h.Push(0, 0, {9}, {1, 1, 1}, 1);
    auto d = h.Push(1, 0, {9}, {1, 1, 1}, 1);
    EXPECT_TRUE(RpcNode::Wait(c, kWait, "push").ok());
    EXPECT_TRUE(RpcNode::Wait(d, kWait, "push").ok());
    // Both steps were applied (a pull of step 2 waits for them) and nothing else was.
    auto after = h.PullValues(0, 0, {9}, 2);
    ASSERT_TRUE(after.ok());
    EXPECT_NE(*after, initial);
    EXPECT_EQ(h.server_->stats().rejected, 5);
  }
}

TEST(ServerTest, PushThatLeavesANonFiniteRowFailsAndEveryLaterRequestFailsWithIt) {
  ServerHarness h(1, 2, false, 3, kernels::OptimizerKind::kSgd);
  ASSERT_TRUE(h.PushAndWait(0, 0, {1, 2}, {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, 0).ok());
  // A NaN gradient (a forged push: a worker checks its own) makes key 7's row NaN.
  Status bad = h.PushAndWait(0, 1, {6, 7}, {0.1f, 0.1f, 0.1f, 0.1f, NAN, 0.1f}, 1);
  EXPECT_EQ(bad.code(), StatusCode::kNonFinite) << bad.ToString();
  EXPECT_NE(bad.message().find("non-finite model at step 2: table 1, key 7: the row is not "
                               "finite after server:0 applied the push of worker:0"),
            std::string::npos)
      << bad.message();
  // No worker gets rows any more and nothing more is applied, on either table.
  auto pulled = h.PullValues(0, 0, {1}, 2);
  EXPECT_EQ(pulled.status().code(), StatusCode::kNonFinite);
  EXPECT_EQ(h.PushAndWait(0, 0, {1}, {1, 1, 1}, 2).code(), StatusCode::kNonFinite);
}

TEST(ServerTest, UpdateThatOverflowsARowToInfinityFails) {
  ServerHarness h(1, 1, false, 3, kernels::OptimizerKind::kSgd);
  // Finite gradients: SGD (lr 0.1) moves the row by 3e37 per push; the tenth crosses float max.
  Status s;
  int64_t clock = 0;
  for (; clock < 20 && s.ok(); ++clock) {
    s = h.PushAndWait(0, 0, {9}, {-3e38f, 0.0f, 0.0f}, clock);
  }
  EXPECT_EQ(s.code(), StatusCode::kNonFinite) << s.ToString();
  EXPECT_GE(clock, 10);
  EXPECT_NE(s.message().find("table 0, key 9"), std::string::npos) << s.message();
}

// Deterministic mode applies the pushes of a step in worker-rank order, whatever the arrival
// order: the result equals applying them sequentially, worker 0 first.
TEST(ServerTest, DeterministicModeAppliesPushesInWorkerRankOrder) {
  for (bool worker1_first : {false, true}) {
    ServerHarness h(2, 2, true, 3, kernels::OptimizerKind::kAdagrad);
    std::vector<float> g0 = {0.3f, -0.7f, 1.1f}, g1 = {-2.0f, 0.25f, 0.5f};
    std::vector<std::future<StatusOr<Message>>> acks;
    if (worker1_first) acks.push_back(h.Push(1, 0, {4}, g1, 0));
    acks.push_back(h.Push(0, 0, {4}, g0, 0));
    if (!worker1_first) acks.push_back(h.Push(1, 0, {4}, g1, 0));
    for (auto& a : acks) ASSERT_TRUE(RpcNode::Wait(a, kWait, "push").ok());
    auto got = h.PullValues(0, 0, {4}, 1);
    ASSERT_TRUE(got.ok());
    std::vector<float> w = h.InitialRow(0, 4), acc(3, 0.0f);
    kernels::AdagradParams p;
    p.lr = 0.1f;
    for (const auto& g : {g0, g1}) {
      for (int j = 0; j < 3; ++j) w[j] = kernels::AdagradStep(w[j], g[j], &acc[j], p);
    }
    EXPECT_EQ(*got, w) << "worker 1 first: " << worker1_first;
  }
}

// Property: random pulls and pushes (random keys, duplicates, both tables, several shard
// threads) give exactly the rows of a sequential in-memory reference.
TEST(ServerPropertyTest, RandomPullPushSequencesMatchAnInMemoryReference) {
  const uint32_t seed = 20261206;  // fixed, so that a failure repeats; printed on failure
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int shard_threads : {1, 3}) {
    ServerHarness h(1, shard_threads, false, 4, kernels::OptimizerKind::kAdagrad);
    std::map<std::pair<uint32_t, uint64_t>, std::pair<std::vector<float>, std::vector<float>>> ref;
    kernels::AdagradParams p;
    p.lr = 0.1f;
    auto ref_row = [&](uint32_t t, uint64_t k) -> auto& {
      auto it = ref.find({t, k});
      if (it == ref.end()) {
        it = ref.emplace(std::make_pair(t, k),
                         std::make_pair(h.InitialRow(t, k), std::vector<float>(4, 0.0f)))
                 .first;
      }
      return it->second;
    };
    int64_t clock = 0;
    std::vector<uint64_t> last_pulled[2];
    for (int op = 0; op < 300; ++op) {
      const uint32_t table = rng() % 2;
      std::vector<uint64_t> keys(1 + rng() % 20);
      for (auto& k : keys) k = rng() % 50 + (rng() % 4 == 0 ? (uint64_t{1} << 63) : 0);
      // Often push exactly the keys just pulled, as a worker does (the server reuses rows).
      // Sometimes the same key bytes go to the other table: the server must not mix them up.
      if (!last_pulled[table].empty() && rng() % 2 == 0) keys = last_pulled[table];
      if (!last_pulled[1 - table].empty() && rng() % 8 == 0) keys = last_pulled[1 - table];
      if (rng() % 2 == 0) {
        last_pulled[table] = keys;
        auto got = h.PullValues(0, table, keys, clock);
        ASSERT_TRUE(got.ok());
        for (size_t i = 0; i < keys.size(); ++i) {
          const auto& w = ref_row(table, keys[i]).first;
          for (int j = 0; j < 4; ++j) ASSERT_EQ((*got)[i * 4 + j], w[j]) << "op " << op;
        }
      } else {
        std::vector<float> grads(keys.size() * 4);
        for (auto& g : grads) g = std::uniform_real_distribution<float>(-1, 1)(rng);
        for (size_t i = 0; i < keys.size(); ++i) {
          auto& [w, acc] = ref_row(table, keys[i]);
          for (int j = 0; j < 4; ++j)
            w[j] = kernels::AdagradStep(w[j], grads[i * 4 + j], &acc[j], p);
        }
        auto ack = h.Push(0, table, keys, grads, clock++);
        ASSERT_TRUE(RpcNode::Wait(ack, kWait, "push").ok());
      }
    }
    for (const auto& [tk, row] : ref) {
      const float* got = h.server_->PeekRow(tk.first, tk.second);
      ASSERT_NE(got, nullptr);
      for (int j = 0; j < 4; ++j) EXPECT_EQ(got[j], row.first[j]);
    }
  }
}

// Requests large enough (rows x dim >= 2^20) for the shard's helper to take half the rows of
// the update and of the copy give the same rows, bit for bit, as one thread per shard, for
// pulls that create rows, pushes that reuse the pull's rows, and pulls that do not create.
TEST(ServerTest, HelperThreadPerShardGivesTheSameBits) {
  constexpr int kDim = 64;
  constexpr uint64_t kKeys = 20000;
  for (auto kind : {kernels::OptimizerKind::kAdagrad, kernels::OptimizerKind::kAdam}) {
    ServerHarness one(1, 1, true, kDim, kind, 1);
    ServerHarness two(1, 1, true, kDim, kind, 2);
    std::mt19937_64 rng(5);
    std::normal_distribution<float> grad(0.0f, 0.3f);
    for (int64_t step = 0; step < 3; ++step) {
      // Keys overlap across steps, so later steps update rows that earlier ones created.
      std::vector<uint64_t> keys;
      for (uint64_t k = 0; k < kKeys; ++k) keys.push_back((rng() % (3 * kKeys)) * 2 + 1);
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      std::shuffle(keys.begin(), keys.end(), rng);
      std::vector<float> grads(keys.size() * kDim);
      for (float& g : grads) g = grad(rng);
      auto a = one.PullValues(0, 0, keys, step);
      auto b = two.PullValues(0, 0, keys, step);
      ASSERT_TRUE(a.ok() && b.ok());
      ASSERT_EQ(*a, *b) << "step " << step;
      ASSERT_TRUE(one.PushAndWait(0, 0, keys, grads, step).ok());
      ASSERT_TRUE(two.PushAndWait(0, 0, keys, grads, step).ok());
    }
    // Every row ever touched plus unseen ones, without creating.
    std::vector<uint64_t> all;
    for (uint64_t k = 0; k < 6 * kKeys + 2000; ++k) all.push_back(k);
    auto a = one.PullValues(0, 0, all, 3, proto::FLAG_NO_CREATE);
    auto b = two.PullValues(0, 0, all, 3, proto::FLAG_NO_CREATE);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
    EXPECT_NE(*a, std::vector<float>(a->size(), 0.0f));
  }
}

TEST(ServerTest, ThreadsPerShardOutsideOneToTwoIsRefused) {
  InProcHub hub;
  InProcTransport transport(&hub, NodeId::Server(0));
  RpcNode rpc(&transport);
  ServerOptions options;
  options.tables.resize(1);
  options.tables[0].dim = 4;
  options.threads_per_shard = 3;
  auto server = Server::Create(options, 0, &rpc);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(server.status().message().find("threads per shard"), std::string::npos);
}

TEST(ServerTest, ShutdownIsAcknowledgedAndEndsTheWait) {
  ServerHarness h(1, 1, false);
  Message m;
  m.header.set_command(proto::COMMAND_SHUTDOWN);
  EXPECT_TRUE(h.workers_[0]->CallAndWait(NodeId::Server(0), std::move(m), kWait).ok());
  EXPECT_TRUE(h.server_->WaitForShutdown(milliseconds(1000)).ok());
}

}  // namespace
}  // namespace tessera::server

#include "worker/ps_client.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <thread>

#include "core/inproc_transport.h"
#include "core/logging.h"
#include "server/server.h"

namespace tessera::worker {
namespace {

using std::chrono::milliseconds;

TEST(KeyDeduperTest, ListsUniqueKeysInFirstOccurrenceOrderAndMapsEveryKey) {
  KeyDeduper dedup;
  std::vector<uint64_t> keys = {5, 9, 5, 0, UINT64_MAX, 9, 9, 0};
  std::vector<uint64_t> unique;
  std::vector<int32_t> index(keys.size());
  dedup.Deduplicate(keys.data(), keys.size(), &unique, index.data());
  EXPECT_EQ(unique, (std::vector<uint64_t>{5, 9, 0, UINT64_MAX}));
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(unique[index[i]], keys[i]);
}

// Small ids (the direct array, grown as larger ones arrive), large keys (the hash) and keys on
// either side of the boundary between them, mixed in one batch: first occurrences in order; and
// the same through the hash alone (KeyDeduper(false), the general path).
TEST(KeyDeduperTest, ReuseAcrossBatchesForgetsPreviousBatches) {
  for (bool direct : {true, false}) {
    KeyDeduper dedup(direct);
    std::mt19937_64 rng(3);
    const uint64_t edge = KeyDeduper::kMaxDirectKeys;
    for (int batch = 0; batch < 50; ++batch) {
      std::vector<uint64_t> keys(1 + rng() % 5000);
      const uint64_t small_ids = 700 * static_cast<uint64_t>(batch + 1);
      for (auto& k : keys) {
        switch (rng() % 4) {
          case 0:
            k = (rng() % 700) | (uint64_t{1} << 40);
            break;
          case 1:
            k = edge - 2 + rng() % 4;
            break;
          default:
            k = rng() % small_ids;
        }
      }
      std::vector<uint64_t> unique;
      std::vector<int32_t> index(keys.size());
      dedup.Deduplicate(keys.data(), keys.size(), &unique, index.data());
      std::vector<uint64_t> first;
      std::set<uint64_t> seen;
      for (uint64_t k : keys) {
        if (seen.insert(k).second) first.push_back(k);
      }
      ASSERT_EQ(unique, first) << "direct " << direct;
      for (size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(unique[index[i]], keys[i]);
    }
  }
}

TEST(PsClientPlanTest, EveryUniqueKeyGoesToItsOwnerExactlyOnce) {
  const ShardMap map = ShardMap::Even(3, 1);
  PsClient client(nullptr, map, TableLayout{{4, 2}}, milliseconds(1000));
  std::vector<std::vector<uint64_t>> unique = {{}, {}};
  for (uint64_t k = 0; k < 1000; ++k) unique[k % 2].push_back(k * 7919);
  BatchPlan plan = client.Plan(unique);
  ASSERT_EQ(plan.parts.size(), 3u);
  EXPECT_EQ(plan.value_offset[1], unique[0].size() * 4);
  EXPECT_EQ(plan.total_floats, unique[0].size() * 4 + unique[1].size() * 2);
  std::vector<std::vector<int>> seen = {std::vector<int>(unique[0].size()),
                                        std::vector<int>(unique[1].size())};
  for (int s = 0; s < 3; ++s) {
    const auto& part = plan.parts[s];
    EXPECT_FALSE(part.identity);
    const uint64_t* keys = part.keys.as<uint64_t>();
    for (uint32_t t = 0; t < 2; ++t) {
      ASSERT_EQ(part.counts[t], part.positions[t].size());
      for (uint32_t p : part.positions[t]) {
        EXPECT_EQ(*keys++, unique[t][p]);
        EXPECT_EQ(map.ServerOf(t, unique[t][p]), s);
        ++seen[t][p];
      }
    }
  }
  for (const auto& table : seen)
    for (int n : table) EXPECT_EQ(n, 1);
}

TEST(PsClientPlanTest, SingleServerPlanIsTheIdentity) {
  PsClient client(nullptr, ShardMap::Even(1, 1), TableLayout{{3, 3}}, milliseconds(1000));
  BatchPlan plan = client.Plan({{10, 20}, {30}});
  ASSERT_EQ(plan.parts.size(), 1u);
  EXPECT_TRUE(plan.parts[0].identity);
  ASSERT_EQ(plan.parts[0].keys.count<uint64_t>(), 3u);
  EXPECT_EQ(plan.parts[0].keys.as<uint64_t>()[2], 30u);
}

// Two servers and one worker in one process: pulls gather rows from both servers into unique
// order, and pushes reach the right rows.
TEST(PsClientTest, PullAndPushAcrossTwoServers) {
  InProcHub hub;
  server::ServerOptions options;
  for (uint32_t t = 0; t < 2; ++t) {
    server::TableOptions table;
    table.table_id = t;
    table.dim = 3;
    table.seed = 5;
    table.optimizer.kind = kernels::OptimizerKind::kSgd;
    table.optimizer.lr = 1.0f;
    options.tables.push_back(table);
  }
  const ShardMap map = ShardMap::Even(2, 1);
  std::vector<std::unique_ptr<InProcTransport>> transports;
  std::vector<std::unique_ptr<RpcNode>> rpcs;
  std::vector<std::unique_ptr<server::Server>> servers;
  for (int s = 0; s < 2; ++s) {
    transports.push_back(std::make_unique<InProcTransport>(&hub, NodeId::Server(s)));
    rpcs.push_back(std::make_unique<RpcNode>(transports.back().get()));
    auto server = server::Server::Create(options, s, rpcs.back().get());
    ASSERT_TRUE(server.ok());
    servers.push_back(std::move(*server));
    server::Server* raw = servers.back().get();
    ASSERT_TRUE(rpcs.back()->Start([raw](Message&& m) { raw->HandleRequest(std::move(m)); }).ok());
    ASSERT_TRUE(raw->Start(map, 1).ok());
  }
  InProcTransport worker_transport(&hub, NodeId::Worker(0));
  RpcNode worker(&worker_transport);
  ASSERT_TRUE(worker.Start(nullptr).ok());
  PsClient client(&worker, map, TableLayout{{3, 3}}, milliseconds(10000));

  std::vector<std::vector<uint64_t>> unique = {{1, 2, 3, 4, 5, 6}, {100, 200}};
  BatchPlan plan = client.Plan(unique);
  ASSERT_GT(plan.parts[0].keys.size(), 0u);  // both servers take part
  ASSERT_GT(plan.parts[1].keys.size(), 0u);
  auto pull = client.StartPull(plan, 0, proto::FLAG_NONE);
  std::vector<const float*> rows;
  ASSERT_TRUE(client.FinishPull(plan, pull, &rows).ok());
  auto table = server::EmbeddingTable::Create(options.tables[0]);
  std::vector<float> expect(3);
  for (size_t i = 0; i < unique[0].size(); ++i) {
    (*table)->InitialWeights(unique[0][i], expect.data());
    for (int j = 0; j < 3; ++j) EXPECT_EQ(rows[0][i * 3 + j], expect[j]) << "key " << unique[0][i];
  }
  std::vector<float> before(rows[0], rows[0] + 18);

  float* grads = nullptr;
  Frame frame = PsClient::AllocateGradients(plan, &grads);
  std::fill_n(grads, plan.total_floats, 0.0f);
  for (size_t i = 0; i < unique[0].size(); ++i) grads[i * 3] = static_cast<float>(i + 1);
  ASSERT_TRUE(client.StartPush(plan, std::move(frame), 0).ok());
  ASSERT_TRUE(client.WaitPushes().ok());
  auto again = client.StartPull(plan, 1, proto::FLAG_NONE);
  ASSERT_TRUE(client.FinishPull(plan, again, &rows).ok());
  for (size_t i = 0; i < unique[0].size(); ++i) {
    EXPECT_FLOAT_EQ(rows[0][i * 3], before[i * 3] - static_cast<float>(i + 1));  // SGD, lr 1
    EXPECT_EQ(rows[0][i * 3 + 1], before[i * 3 + 1]);
  }
  worker.Stop();
  for (auto& r : rpcs) r->Stop();
}

// `num_servers` in-process servers with two tables of rows of 3 floats, and a worker's RpcNode.
struct TestCluster {
  explicit TestCluster(int num_servers) : map(ShardMap::Even(num_servers, 1)) {
    for (uint32_t t = 0; t < 2; ++t) {
      server::TableOptions table;
      table.table_id = t;
      table.dim = 3;
      table.seed = 5;
      options.tables.push_back(table);
    }
    for (int s = 0; s < num_servers; ++s) {
      transports.push_back(std::make_unique<InProcTransport>(&hub, NodeId::Server(s)));
      rpcs.push_back(std::make_unique<RpcNode>(transports.back().get()));
      auto server = server::Server::Create(options, s, rpcs.back().get());
      EXPECT_TRUE(server.ok());
      servers.push_back(std::move(*server));
      server::Server* raw = servers.back().get();
      EXPECT_TRUE(
          rpcs.back()->Start([raw](Message&& m) { raw->HandleRequest(std::move(m)); }).ok());
      EXPECT_TRUE(raw->Start(map, 1).ok());
    }
    EXPECT_TRUE(worker.Start(nullptr).ok());
  }
  ~TestCluster() {
    worker.Stop();
    for (auto& r : rpcs) r->Stop();
  }

  InProcHub hub;
  server::ServerOptions options;
  const ShardMap map;
  std::vector<std::unique_ptr<InProcTransport>> transports;
  std::vector<std::unique_ptr<RpcNode>> rpcs;
  std::vector<std::unique_ptr<server::Server>> servers;
  InProcTransport worker_transport{&hub, NodeId::Worker(0)};
  RpcNode worker{&worker_transport};
};

TEST(PsClientTest, PullDecodesIntoTheCallersBufferInPlanLayout) {
  for (int num_servers : {1, 2}) {
    SCOPED_TRACE("servers " + std::to_string(num_servers));
    TestCluster cluster(num_servers);
    PsClient client(&cluster.worker, cluster.map, TableLayout{{3, 3}}, milliseconds(10000));
    const std::vector<std::vector<uint64_t>> unique = {{9, 1, 7, 3, 5}, {100, 200, 300}};
    const BatchPlan plan = client.Plan(unique);
    auto pull = client.StartPull(plan, 0, proto::FLAG_NONE);
    std::vector<const float*> in_place;
    ASSERT_TRUE(client.FinishPull(plan, pull, &in_place).ok());
    std::vector<float> expect(in_place[0], in_place[0] + plan.total_floats);
    // A second pull of the same rows, decoded into a caller's buffer (a canary after it).
    std::vector<float> into(plan.total_floats + 1, -7.0f);
    auto again = client.StartPull(plan, 0, proto::FLAG_NONE);
    std::vector<const float*> rows;
    ASSERT_TRUE(client.FinishPull(plan, again, &rows, into.data()).ok());
    ASSERT_EQ(rows.size(), 2u);
    for (size_t t = 0; t < 2; ++t) EXPECT_EQ(rows[t], into.data() + plan.value_offset[t]);
    EXPECT_EQ(std::vector<float>(into.begin(), into.end() - 1), expect);
    EXPECT_EQ(into.back(), -7.0f);
  }
}

TEST(PsClientTest, PushWithTheWrongNumberOfGradientsIsRefused) {
  PsClient client(nullptr, ShardMap::Even(1, 1), TableLayout{{2}}, milliseconds(1000));
  BatchPlan plan = client.Plan({{1, 2}});
  EXPECT_EQ(client.StartPush(plan, Frame::FromVector(std::vector<float>(3)), 0).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::worker

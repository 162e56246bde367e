// InProcessCollectiveGroup: W threads of one process. The expected sums are computed here with a
// plain rank-order loop; inputs span many binary exponents so that a different summation order
// changes the result (checked), which makes "bit-identical to the rank-order sum" a real test.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/testing/collective_values.h"
#include "worker/inproc_collective.h"

namespace tessera::worker {
namespace {

using std::chrono::milliseconds;
using ::tessera::testing::BitIdentical;
using ::tessera::testing::WideRangeValues;

// Runs fn(member r) on one thread per member and returns each member's Status.
std::vector<Status> RunOnMembers(InProcessCollectiveGroup& group,
                                 const std::function<Status(Collective&)>& fn) {
  std::vector<Status> statuses(group.size());
  std::vector<std::thread> threads;
  for (int r = 0; r < group.size(); ++r) {
    threads.emplace_back([&, r] { statuses[r] = fn(group.Member(r)); });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

TEST(InProcessCollectiveTest, MembersKnowRankAndSize) {
  InProcessCollectiveGroup group(3, milliseconds(10000));
  EXPECT_EQ(group.size(), 3);
  for (int r = 0; r < 3; ++r) {
    EXPECT_EQ(group.Member(r).rank(), r);
    EXPECT_EQ(group.Member(r).size(), 3);
  }
  EXPECT_TRUE(group.status().ok());
  EXPECT_EQ(group.num_waiting(), 0);
}

TEST(InProcessCollectiveTest, AllReduceSumIsTheRankOrderSumOnEveryMember) {
  for (int size : {1, 2, 3, 5}) {
    InProcessCollectiveGroup group(size, milliseconds(30000));
    // Several operations in a row, of different lengths (0, 1, not a multiple of anything).
    for (size_t count : {size_t{1000}, size_t{0}, size_t{1}, size_t{4099}}) {
      const unsigned seed = 1000 * size + static_cast<unsigned>(count);
      SCOPED_TRACE("size=" + std::to_string(size) + " count=" + std::to_string(count) +
                   " seed=" + std::to_string(seed));
      std::vector<std::vector<float>> inputs(size), buffers(size);
      for (int r = 0; r < size; ++r) inputs[r] = WideRangeValues(count, seed + r);
      buffers = inputs;
      std::vector<float> expected = inputs[0];
      for (int r = 1; r < size; ++r) {
        for (size_t i = 0; i < count; ++i) expected[i] += inputs[r][i];
      }
      const auto statuses = RunOnMembers(
          group, [&](Collective& c) { return c.AllReduceSum(buffers[c.rank()].data(), count); });
      for (int r = 0; r < size; ++r) {
        ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
        EXPECT_TRUE(BitIdentical(buffers[r], expected)) << "rank " << r;
      }
      if (size >= 3 && count > 100) {
        // The same numbers summed in reverse rank order differ somewhere: order matters here.
        std::vector<float> reverse = inputs[size - 1];
        for (int r = size - 2; r >= 0; --r) {
          for (size_t i = 0; i < count; ++i) reverse[i] += inputs[r][i];
        }
        EXPECT_FALSE(BitIdentical(reverse, expected));
      }
    }
  }
}

TEST(InProcessCollectiveTest, AllGatherConcatenatesUnequalLengthsInRankOrder) {
  for (int size : {1, 2, 3, 5}) {
    SCOPED_TRACE("size=" + std::to_string(size));
    InProcessCollectiveGroup group(size, milliseconds(30000));
    // Rank r contributes 2r floats r*100, r*100+1, ... (rank 0 contributes none).
    std::vector<float> expected;
    std::vector<std::vector<float>> locals(size);
    for (int r = 0; r < size; ++r) {
      for (int i = 0; i < 2 * r; ++i) locals[r].push_back(static_cast<float>(r * 100 + i));
      expected.insert(expected.end(), locals[r].begin(), locals[r].end());
    }
    std::vector<std::vector<float>> outputs(size, std::vector<float>(3, -1.0f));
    auto statuses = RunOnMembers(
        group, [&](Collective& c) { return c.AllGather(locals[c.rank()], &outputs[c.rank()]); });
    for (int r = 0; r < size; ++r) {
      ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
      EXPECT_EQ(outputs[r], expected) << "rank " << r;
    }
    // The output may be the input vector itself.
    statuses = RunOnMembers(
        group, [&](Collective& c) { return c.AllGather(locals[c.rank()], &locals[c.rank()]); });
    for (int r = 0; r < size; ++r) {
      ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
      EXPECT_EQ(locals[r], expected) << "rank " << r;
    }
  }
}

TEST(InProcessCollectiveTest, BroadcastCopiesTheRootsBufferToEveryMember) {
  const int size = 3;
  InProcessCollectiveGroup group(size, milliseconds(30000));
  for (int root = 0; root < size; ++root) {
    SCOPED_TRACE("root=" + std::to_string(root));
    std::vector<std::vector<float>> buffers(size);
    for (int r = 0; r < size; ++r) buffers[r] = WideRangeValues(257, 50 + r);
    const std::vector<float> expected = buffers[root];
    const auto statuses = RunOnMembers(
        group, [&](Collective& c) { return c.Broadcast(buffers[c.rank()].data(), 257, root); });
    for (int r = 0; r < size; ++r) {
      ASSERT_TRUE(statuses[r].ok()) << statuses[r].ToString();
      EXPECT_TRUE(BitIdentical(buffers[r], expected)) << "rank " << r;
    }
  }
}

TEST(InProcessCollectiveTest, MemberThatNeverCallsMakesTheOthersTimeOut) {
  InProcessCollectiveGroup group(3, milliseconds(50));
  std::vector<float> a = {1.0f, 2.0f}, b = {3.0f, 4.0f};
  Status sa, sb;
  std::thread ta([&] { sa = group.Member(0).AllReduceSum(a.data(), 2); });
  std::thread tb([&] { sb = group.Member(1).AllReduceSum(b.data(), 2); });
  ta.join();
  tb.join();
  // Whichever member gave up first failed the group; the other got the same Status.
  EXPECT_EQ(sa.code(), StatusCode::kDeadlineExceeded) << sa.ToString();
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa.message().find("rank(s) 2"), std::string::npos) << sa.message();
  EXPECT_NE(sa.message().find("AllReduceSum"), std::string::npos) << sa.message();
  EXPECT_EQ(a, (std::vector<float>{1.0f, 2.0f}));  // nothing was written
  EXPECT_EQ(b, (std::vector<float>{3.0f, 4.0f}));
  EXPECT_EQ(group.status(), sa);
  // The late member, and every later call, gets the failure at once.
  std::vector<float> c = {5.0f, 6.0f};
  EXPECT_EQ(group.Member(2).AllReduceSum(c.data(), 2), sa);
  EXPECT_EQ(c, (std::vector<float>{5.0f, 6.0f}));
  EXPECT_EQ(group.Member(0).Broadcast(a.data(), 2, 0), sa);
}

TEST(InProcessCollectiveTest, AbortWakesEveryWaitingMemberWithTheReason) {
  InProcessCollectiveGroup group(3, milliseconds(60000));
  std::vector<std::vector<float>> buffers(3, std::vector<float>(4, 1.0f));
  std::vector<Status> statuses(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back(
        [&, r] { statuses[r] = group.Member(r).AllReduceSum(buffers[r].data(), 4); });
  }
  while (group.num_waiting() < 2) std::this_thread::yield();
  group.Abort("scheduler lost server 2");
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(statuses[r].code(), StatusCode::kAborted) << statuses[r].ToString();
    EXPECT_NE(statuses[r].message().find("scheduler lost server 2"), std::string::npos);
    EXPECT_EQ(buffers[r], std::vector<float>(4, 1.0f));
  }
  EXPECT_EQ(group.Member(2).AllReduceSum(buffers[2].data(), 4).code(), StatusCode::kAborted);
  group.Abort("a second reason");  // the first failure stays
  EXPECT_NE(group.status().message().find("scheduler lost server 2"), std::string::npos);
}

TEST(InProcessCollectiveTest, AbortBeforeAnyCallFailsEveryCall) {
  InProcessCollectiveGroup group(2, milliseconds(60000));
  group.Abort("job cancelled");
  std::vector<float> all;
  EXPECT_EQ(group.Member(0).AllGather({1.0f}, &all).code(), StatusCode::kAborted);
  EXPECT_EQ(group.Member(1).AllGather({2.0f}, &all).code(), StatusCode::kAborted);
  EXPECT_TRUE(all.empty());
}

TEST(InProcessCollectiveTest, MismatchedCallsFailEveryMemberAndTheGroup) {
  {
    InProcessCollectiveGroup group(2, milliseconds(30000));
    std::vector<std::vector<float>> buffers(2, std::vector<float>(8, 1.0f));
    const auto statuses = RunOnMembers(group, [&](Collective& c) {
      return c.AllReduceSum(buffers[c.rank()].data(), c.rank() == 0 ? 8 : 7);
    });
    for (const Status& s : statuses) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
      EXPECT_NE(s.message().find("rank 1 7"), std::string::npos) << s.message();
    }
    EXPECT_EQ(buffers[0], std::vector<float>(8, 1.0f));
    EXPECT_FALSE(group.status().ok());
  }
  {
    InProcessCollectiveGroup group(2, milliseconds(30000));
    std::vector<float> data(2, 1.0f), all;
    const auto statuses = RunOnMembers(group, [&](Collective& c) {
      return c.rank() == 0 ? c.AllGather(data, &all) : c.Broadcast(nullptr, 0, 0);
    });
    for (const Status& s : statuses) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
      EXPECT_NE(s.message().find("rank 0 called AllGather, rank 1 called Broadcast"),
                std::string::npos)
          << s.message();
    }
  }
  {
    InProcessCollectiveGroup group(2, milliseconds(30000));
    std::vector<std::vector<float>> buffers(2, std::vector<float>(3, 1.0f));
    const auto statuses = RunOnMembers(group, [&](Collective& c) {
      return c.Broadcast(buffers[c.rank()].data(), 3, 2);  // root out of range
    });
    for (const Status& s : statuses) EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace tessera::worker

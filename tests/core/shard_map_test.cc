#include "core/shard_map.h"

#include <gtest/gtest.h>

#include <vector>

namespace tessera {
namespace {

TEST(ShardMapTest, EvenRangesAreContiguousAndBalanced) {
  for (int servers : {1, 2, 3, 7, 64}) {
    ShardMap map = ShardMap::Even(servers, 1);
    ASSERT_EQ(static_cast<int>(map.ranges().size()), servers);
    uint32_t next = 0, smallest = kNumSlots, largest = 0;
    for (const auto& r : map.ranges()) {
      EXPECT_EQ(r.begin, next);
      next = r.end;
      smallest = std::min(smallest, r.end - r.begin);
      largest = std::max(largest, r.end - r.begin);
      for (uint32_t s = r.begin; s < r.end; ++s) ASSERT_EQ(map.ServerOfSlot(s), r.server_rank);
    }
    EXPECT_EQ(next, kNumSlots);
    EXPECT_LE(largest - smallest, 1u) << servers << " servers";
  }
}

TEST(ShardMapTest, KeysSpreadEvenlyOverServers) {
  ShardMap map = ShardMap::Even(4, 1);
  std::vector<int> count(4);
  constexpr int kKeys = 400000;
  for (uint64_t key = 0; key < kKeys; ++key) ++count[map.ServerOf(0, key)];  // dense ids
  for (int c : count) EXPECT_NEAR(c, kKeys / 4, kKeys / 4 * 0.02);
}

TEST(ShardMapTest, SlotOfAKeyIsStableAndIndependentOfServerCount) {
  // Pinned values: checkpoints are stored per slot range, so this function must never change.
  EXPECT_EQ(Mix64(0), 0u);
  EXPECT_EQ(Mix64(1), 0xB456BCFC34C2CB2Cull);
  const uint32_t slot = SlotOf(1, 123456789);
  EXPECT_EQ(SlotOf(1, 123456789), slot);
  EXPECT_NE(SlotOf(0, 123456789), slot);  // tables are separate namespaces (for this key)
  for (int servers : {1, 2, 5}) {
    ShardMap map = ShardMap::Even(servers, 1);
    EXPECT_EQ(map.ServerOf(1, 123456789), map.ServerOfSlot(slot));
  }
}

TEST(ShardMapTest, GrowingFromTwoToThreeServersMovesOnlyReassignedSlots) {
  ShardMap two = ShardMap::Even(2, 1), three = ShardMap::Even(3, 2);
  int moved = 0;
  for (uint32_t s = 0; s < kNumSlots; ++s) moved += two.ServerOfSlot(s) != three.ServerOfSlot(s);
  // 2 servers own [0, 8192) and [8192, 16384); 3 own [0, 5461), [5461, 10922), [10922, 16384).
  // Slots [5461, 8192) move from 0 to 1 and [10922, 16384) from 1 to 2; the rest stay.
  EXPECT_EQ(moved, (8192 - 5461) + (16384 - 10922));
}

TEST(ShardMapTest, ProtoRoundTripKeepsVersionAndOwners) {
  ShardMap map = ShardMap::Even(3, 17);
  auto back = ShardMap::FromProto(map.ToProto());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->version(), 17u);
  EXPECT_EQ(back->num_servers(), 3);
  for (uint32_t s = 0; s < kNumSlots; s += 97)
    EXPECT_EQ(back->ServerOfSlot(s), map.ServerOfSlot(s));
}

TEST(ShardMapTest, MapsWithGapsOverlapsOrWrongSlotCountAreRejected) {
  proto::ShardMapProto gap = ShardMap::Even(2, 1).ToProto();
  gap.mutable_ranges(1)->set_begin(gap.ranges(1).begin() + 1);
  EXPECT_FALSE(ShardMap::FromProto(gap).ok());
  proto::ShardMapProto overlap = ShardMap::Even(2, 1).ToProto();
  overlap.mutable_ranges(1)->set_begin(overlap.ranges(1).begin() - 1);
  EXPECT_FALSE(ShardMap::FromProto(overlap).ok());
  proto::ShardMapProto slots = ShardMap::Even(2, 1).ToProto();
  slots.set_num_slots(100);
  EXPECT_FALSE(ShardMap::FromProto(slots).ok());
  proto::ShardMapProto negative = ShardMap::Even(1, 1).ToProto();
  negative.mutable_ranges(0)->set_server_rank(-1);
  EXPECT_FALSE(ShardMap::FromProto(negative).ok());
}

}  // namespace
}  // namespace tessera

// Sharding: key -> virtual slot -> server. `slot = Mix64(table, key) mod 16384` (virtual slots, as
// in Redis Cluster); the scheduler assigns contiguous slot ranges to servers and publishes the
// map with a version. A key's slot never depends on the number of servers, so checkpoints stored
// per slot range can be loaded by a job with a different number of servers.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "proto/tessera.pb.h"

namespace tessera {

constexpr uint32_t kNumSlots = 16384;

// MurmurHash3's 64-bit finaliser: a fast bijective mixer with good avalanche.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

inline uint32_t SlotOf(uint32_t table_id, uint64_t key) {
  return static_cast<uint32_t>(Mix64(key ^ (0x9E3779B97F4A7C15ull * (table_id + 1ull))) &
                               (kNumSlots - 1));
}

struct SlotRangeAssignment {
  uint32_t begin = 0;  // first slot
  uint32_t end = 0;    // one past the last slot
  int server_rank = 0;
};

// Immutable once built; safe to share between threads.
class ShardMap {
 public:
  ShardMap() = default;
  // `num_servers` contiguous ranges whose sizes differ by at most one slot; server r owns the
  // r-th range.
  static ShardMap Even(int num_servers, uint64_t version);
  // Checks that the ranges cover [0, kNumSlots) exactly once with ranks in [0, num_servers).
  static StatusOr<ShardMap> FromProto(const proto::ShardMapProto& p);
  proto::ShardMapProto ToProto() const;

  uint64_t version() const { return version_; }
  int num_servers() const { return num_servers_; }
  const std::vector<SlotRangeAssignment>& ranges() const { return ranges_; }
  int ServerOfSlot(uint32_t slot) const { return owner_[slot]; }
  int ServerOf(uint32_t table_id, uint64_t key) const { return owner_[SlotOf(table_id, key)]; }

 private:
  void BuildOwnerTable();

  uint64_t version_ = 0;
  int num_servers_ = 0;
  std::vector<SlotRangeAssignment> ranges_;
  std::vector<int16_t> owner_;  // slot -> server rank
};

}  // namespace tessera

#include "core/shard_map.h"

#include <algorithm>
#include <string>

namespace tessera {

ShardMap ShardMap::Even(int num_servers, uint64_t version) {
  ShardMap map;
  map.version_ = version;
  map.num_servers_ = num_servers;
  uint32_t begin = 0;
  for (int r = 0; r < num_servers; ++r) {
    uint32_t end = static_cast<uint32_t>(uint64_t{kNumSlots} * (r + 1) / num_servers);
    map.ranges_.push_back({begin, end, r});
    begin = end;
  }
  map.BuildOwnerTable();
  return map;
}

void ShardMap::BuildOwnerTable() {
  owner_.assign(kNumSlots, -1);
  for (const auto& r : ranges_) {
    for (uint32_t s = r.begin; s < r.end; ++s) owner_[s] = static_cast<int16_t>(r.server_rank);
  }
}

StatusOr<ShardMap> ShardMap::FromProto(const proto::ShardMapProto& p) {
  if (p.num_slots() != kNumSlots) {
    return Status::InvalidArgument("shard map has " + std::to_string(p.num_slots()) +
                                   " slots, expected " + std::to_string(kNumSlots));
  }
  ShardMap map;
  map.version_ = p.version();
  int max_rank = -1;
  for (const auto& r : p.ranges()) {
    if (r.begin() >= r.end() || r.end() > kNumSlots || r.server_rank() < 0 ||
        r.server_rank() > INT16_MAX) {
      return Status::InvalidArgument("bad slot range [" + std::to_string(r.begin()) + ", " +
                                     std::to_string(r.end()) + ") -> server " +
                                     std::to_string(r.server_rank()));
    }
    map.ranges_.push_back({r.begin(), r.end(), r.server_rank()});
    max_rank = std::max(max_rank, r.server_rank());
  }
  std::sort(map.ranges_.begin(), map.ranges_.end(),
            [](const auto& a, const auto& b) { return a.begin < b.begin; });
  uint32_t expect = 0;
  for (const auto& r : map.ranges_) {
    if (r.begin != expect) {
      return Status::InvalidArgument("shard map does not cover slot " + std::to_string(expect) +
                                     " exactly once");
    }
    expect = r.end;
  }
  if (expect != kNumSlots) {
    return Status::InvalidArgument("shard map stops at slot " + std::to_string(expect));
  }
  map.num_servers_ = max_rank + 1;
  map.BuildOwnerTable();
  return map;
}

proto::ShardMapProto ShardMap::ToProto() const {
  proto::ShardMapProto p;
  p.set_version(version_);
  p.set_num_slots(kNumSlots);
  for (const auto& r : ranges_) {
    auto* out = p.add_ranges();
    out->set_begin(r.begin);
    out->set_end(r.end);
    out->set_server_rank(r.server_rank);
  }
  return p;
}

}  // namespace tessera

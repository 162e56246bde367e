// The worker's side of the parameter server: key deduplication, per-server partitioning, and
// PULL/PUSH with any number of requests in flight.
//
// One step: Deduplicate the batch's keys per table -> Plan (which unique key goes to which
// server) -> StartPull (one request per server carrying all tables' keys) -> FinishPull (rows
// per table, in unique-key order) -> compute -> StartPush (one request per server with the
// summed gradients). With a single server no bytes are copied on the way: the key frame is built
// once and shared by the pull and the push, pulled rows are read in place from the reply, and
// the gradient buffer becomes the push frame.
//
// Thread-compatible: one trainer thread uses a PsClient; replies complete on the transport's
// thread through futures.
#pragma once

#include <chrono>
#include <future>
#include <vector>

#include "core/rpc.h"
#include "core/shard_map.h"

namespace tessera::worker {

// Maps a batch's keys to dense indices of their first occurrence. Reused across batches
// (clearing is O(1) through a generation stamp). Deterministic: unique keys are listed in order
// of first occurrence. Keys below kMaxDirectKeys (small integer ids: MF's users and items) are
// looked up in an array indexed by the key, grown to cover the largest one seen (8 bytes per id:
// 32 MiB at most); the others in an open-addressing hash table sized for the batch.
class KeyDeduper {
 public:
  static constexpr uint64_t kMaxDirectKeys = uint64_t{1} << 22;

  // `direct` false: every key through the hash (the general path, for the tests' comparisons).
  explicit KeyDeduper(bool direct = true) : direct_limit_(direct ? kMaxDirectKeys : 0) {}

  // unique (cleared first) receives the distinct keys; index[i] is keys[i]'s position in it.
  void Deduplicate(const uint64_t* keys, size_t n, std::vector<uint64_t>* unique, int32_t* index);

 private:
  struct DirectEntry {
    uint32_t stamp;  // the batch that last saw this key
    int32_t value;   // its index in that batch's unique keys
  };
  void Reserve(size_t n);
  void GrowDirect(uint64_t key);
  std::vector<uint64_t> slot_keys_;
  std::vector<int32_t> slot_values_;
  std::vector<uint32_t> slot_stamps_;
  std::vector<DirectEntry> direct_;
  uint32_t stamp_ = 0;
  uint64_t mask_ = 0;
  uint64_t direct_limit_;  // keys below it use direct_: kMaxDirectKeys, or 0
};

// Which server gets which unique keys of a batch.
struct BatchPlan {
  struct Part {
    Frame keys;                                    // this server's keys, table after table
    std::vector<uint64_t> counts;                  // keys per table
    std::vector<std::vector<uint32_t>> positions;  // per table: indices into the unique keys
    bool identity = false;  // positions are 0..n-1 of every table (one server)
  };
  std::vector<Part> parts;             // by server rank
  std::vector<uint64_t> unique_count;  // per table
  std::vector<uint64_t> value_offset;  // per table: first float in a table-after-table buffer
  uint64_t total_floats = 0;
};

class PsClient {
 public:
  // `layout.dims[t]` is the width of table t's rows. Borrows rpc.
  PsClient(RpcNode* rpc, ShardMap shard_map, TableLayout layout, std::chrono::milliseconds timeout);

  BatchPlan Plan(const std::vector<std::vector<uint64_t>>& unique_keys) const;

  struct PendingPull {
    std::vector<std::future<StatusOr<Message>>> replies;  // by server
    std::vector<Message> messages;                        // replies once finished
    std::vector<float> gathered;                          // rows when several servers answered
  };
  // Sends one PULL per server (servers with no keys of this batch are skipped).
  PendingPull StartPull(const BatchPlan& plan, int64_t clock, uint32_t flags);
  // Waits for every reply; rows[t] then points at unique_count[t] x dims[t] floats of table t,
  // valid while `pending` lives. With `into` (plan.total_floats floats, e.g. a device model's
  // pinned staging) the rows are decoded there, table after table at plan.value_offset, and
  // rows[t] points into it.
  Status FinishPull(const BatchPlan& plan, PendingPull& pending, std::vector<const float*>* rows,
                    float* into = nullptr);

  // A buffer for a step's gradients: plan.total_floats floats, table after table
  // (plan.value_offset) in unique-key order, 64-byte aligned and NOT zeroed. `*writable` may be
  // written until the frame is handed to StartPush.
  static Frame AllocateGradients(const BatchPlan& plan, float** writable);
  // Sends one PUSH per server (every server, even with no keys: BSP counts pushes per step).
  // With one server the gradient frame itself is sent.
  Status StartPush(const BatchPlan& plan, Frame grads, int64_t clock);
  // Waits for the acknowledgements of every push sent so far; the first error wins.
  Status WaitPushes();

  int num_servers() const { return shard_map_.num_servers(); }

 private:
  Message MakeRequest(proto::Command command, const BatchPlan::Part& part, int64_t clock) const;

  RpcNode* rpc_;
  const ShardMap shard_map_;
  const TableLayout layout_;
  const std::chrono::milliseconds timeout_;
  std::vector<std::future<StatusOr<Message>>> push_acks_;
};

}  // namespace tessera::worker

// EmbeddingTable: the rows of one embedding table (or one shard thread's part of it) on a
// parameter server. Keys that are small integers (MF's user and item ids) are looked up in a
// directly indexed array, the rest by an open-addressing hash index (linear probing); either maps
// a uint64 Key to a row number, and rows live in a chunked arena. A row is [dim weights |
// optimizer state], contiguous, 16-byte aligned, created and initialised on first touch from
// (seed, table_id, key) alone, so two servers create bit-identical rows for the same key
// (DESIGN.md "Sharding").
//
// Ownership: the table owns its index and arena. Row pointers returned by FindOrCreate, Find and
// FindBatch borrow from the arena and stay valid, at the same address, until the table is
// destroyed: arena chunks never move or shrink, and growing either index (the hash doubles at
// load 0.8) only moves key -> row-number entries, never rows.
//
// Threads: one writer. Every non-const call (and every write through a row pointer) must come
// from the shard thread that owns the table (DESIGN.md "Server storage"; no locks inside).
// Const calls may run concurrently with each other, never with a non-const call.
//
// Memory: the hash index costs 12 bytes per slot (a uint64 key array + a uint32 row-number array;
// empty slots are marked in the row-number array, so every uint64 is a valid key). The direct
// index costs 4 bytes per key below its limit, a power of two that grows (moving the hash's keys
// below it across) only while rows with keys under kMaxDirectKeys fill at least a quarter of it:
// at most 16 bytes per such row, where the hash spends 15-30, and a table of hashed keys (CTR)
// never has one. Dense ids then cost neither the hash nor its two cache misses per lookup.
// Index arrays and arena chunks are mmap'd, so memory is resident only once touched and is
// returned to the OS when freed; large index arrays and the chunks of a large table sit in huge
// pages (embedding_table.cc, NewChunk). For large tables resident bytes per row stay under
// 1.25 * row_floats() * sizeof(float) (measured in tests/server/embedding_table_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/status.h"
#include "kernels/sparse_optimizer.h"

namespace tessera::server {

struct TableOptions {
  // Table id: with seed and key determines a new row's initial weights.
  uint32_t table_id = 0;
  // Weights per row; 1 <= dim <= kMaxDim.
  int dim = 8;
  // Seed of the counter-based initialiser; the same on every server of a job.
  uint64_t seed = 1;
  // Weight j < dim - zero_tail starts as init_std * CounterNormal(RowStream(seed, table_id,
  // key), j). Must be finite and >= 0.
  float init_std = 0.1f;
  // The last zero_tail weights start at 0 (MF keeps the bias last); 0 <= zero_tail <= dim.
  int zero_tail = 0;
  // Decides the optimizer state per row and its initial value.
  kernels::OptimizerParams optimizer;
  // Rows the index holds before its first doubling; >= 0.
  int64_t initial_capacity = 1024;
  // Keys below EmbeddingTable::kMaxDirectKeys may be held in the directly indexed array; false:
  // every key in the hash (the general path, which the tests compare the fast one with).
  bool direct_index = true;
};

class EmbeddingTable {
 public:
  static constexpr int kMaxDim = 1 << 20;
  // Keys below this may be held in the direct index (a limit of 2^26 keys: 256 MiB at most).
  static constexpr uint64_t kMaxDirectKeys = uint64_t{1} << 26;

  // InvalidArgument on bad options (dim out of range, zero_tail outside [0, dim], init_std
  // negative or not finite, negative initial_capacity, optimizer params that
  // kernels::ValidateOptimizerParams rejects).
  static StatusOr<std::unique_ptr<EmbeddingTable>> Create(const TableOptions& options);

  ~EmbeddingTable();
  EmbeddingTable(const EmbeddingTable&) = delete;
  EmbeddingTable& operator=(const EmbeddingTable&) = delete;

  const TableOptions& options() const { return options_; }
  int dim() const { return options_.dim; }
  // Optimizer state floats per row, stored right after the weights.
  int state_floats() const { return state_floats_; }
  // dim() + state_floats(). Rows are stride-padded to a multiple of 4 floats in the arena.
  int row_floats() const { return options_.dim + state_floats_; }
  // Rows in the table.
  int64_t size() const { return num_rows_; }

  // The row of `key` (row_floats() floats), created with its initial weights and initial
  // optimizer state on first touch.
  float* FindOrCreate(uint64_t key);
  // The row of `key`, or nullptr if it has none.
  float* Find(uint64_t key);
  const float* Find(uint64_t key) const;

  // rows[i] = FindOrCreate(keys[i]) if create, else Find(keys[i]), for i in [0, n). The server's
  // hot loop: hashes a block of keys and prefetches their index slots, then probes and
  // prefetches the rows; no allocation per key (only index growth and new arena chunks
  // allocate). Duplicate keys are allowed and get the same pointer.
  // REQUIRES: n >= 0; keys and rows hold n elements.
  void FindBatch(const uint64_t* keys, int64_t n, bool create, float** rows);

  // Sets the row of `key` to `row` (row_floats() floats: weights, then optimizer state), creating
  // it without initialising it first: how a checkpoint is loaded.
  void Restore(uint64_t key, const float* row);

  // Writes the dim() initial weights a row for `key` gets (whether or not it exists) to out.
  void InitialWeights(uint64_t key, float* out) const;

  // Calls fn(uint64_t key, const float* row) once for every row, in unspecified order.
  // REQUIRES: fn does not add rows to this table.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (uint64_t key = 0; key < direct_limit_; ++key) {
      if (const float* row = DirectRow(key)) fn(key, row);
    }
    for (uint64_t slot = 0; slot < num_slots_; ++slot) {
      const uint32_t row = slot_rows_[slot];
      if (row != kEmptySlot) fn(slot_keys_[slot], RowPointer(row));
    }
  }

  // Keys below this are held in the direct index (0 until a small key arrives); for tests.
  uint64_t direct_limit() const { return direct_limit_; }

  // Bytes allocated for the index, the arena chunks and the chunk directory: what is resident
  // once every allocated page has been touched (with huge pages, up to the end of the 2 MiB page
  // that the last chunk ends in).
  size_t MemoryBytes() const;

 private:
  static constexpr uint32_t kEmptySlot = 0xFFFFFFFFu;
  static constexpr size_t kSmallTableChunks = 16;
  static constexpr size_t kSlabBytes = size_t{32} << 20;

  EmbeddingTable(const TableOptions& options, int state_floats);

  float* RowPointer(uint32_t row) const {
    return chunks_[row >> chunk_shift_] + static_cast<size_t>(row & chunk_mask_) * stride_floats_;
  }
  // The row of `key`, or nullptr: from the direct index (REQUIRES key < direct_limit_), or from
  // the hash index given the key's IndexHash.
  float* DirectRow(uint64_t key) const {
    return direct_rows_[key] == 0 ? nullptr : RowPointer(direct_rows_[key] - 1);
  }
  float* HashedRow(uint64_t key, uint64_t hash) const {
    const uint32_t row = slot_rows_[Probe(key, hash)];
    return row == kEmptySlot ? nullptr : RowPointer(row);
  }
  // Slot holding `key`, or the empty slot where it would go.
  uint64_t Probe(uint64_t key, uint64_t hash) const;
  // The row of a key absent from both indexes, created (initialised if `init`) and entered in
  // the direct index when the key is below its limit (which may grow first), else in the hash.
  float* Insert(uint64_t key, bool init = true);
  // A new arena chunk: its own mapping for the first kSmallTableChunks, then carved from slabs.
  float* NewChunk();
  // Appends a row to the arena for `key` and returns its number.
  uint32_t NewRow(uint64_t key, bool init);
  void AllocateIndex(uint64_t num_slots);
  // Moves the hash index's entries into a new one of `num_slots` slots, except the keys below
  // direct_limit_, which go to the direct index.
  void RebuildIndex(uint64_t num_slots);
  // Raises direct_limit_ to `limit` and moves the hash's keys below it into the direct index.
  void GrowDirect(uint64_t limit);
  void InitRow(uint64_t key, float* row) const;

  TableOptions options_;
  int state_floats_;
  int stride_floats_;           // row_floats() rounded up to a multiple of 4
  int chunk_shift_;             // log2(rows per chunk)
  uint32_t chunk_mask_;         // rows per chunk - 1
  size_t chunk_bytes_;          // multiple of the page size
  std::vector<float*> chunks_;  // each chunk_bytes_, mmap'd, never moved
  // Chunks past the first kSmallTableChunks come from slabs: mappings of whole chunks, about
  // kSlabBytes (or one chunk if larger), in huge pages, so that a large table's rows sit in 2 MiB
  // pages. A small table keeps a mapping per chunk and holds no more than it touches.
  std::vector<std::pair<char*, size_t>> slabs_;  // (start, bytes)
  char* slab_next_ = nullptr;                    // the next chunk of the last slab
  size_t slab_left_ = 0;                         // bytes left in the last slab
  int64_t num_rows_ = 0;

  uint64_t* slot_keys_ = nullptr;  // num_slots_ keys; meaningful where slot_rows_ != kEmptySlot
  uint32_t* slot_rows_ = nullptr;  // num_slots_ row numbers or kEmptySlot
  uint64_t num_slots_ = 0;         // a power of two
  int slot_shift_ = 64;            // 64 - log2(num_slots_): slot = hash >> slot_shift_
  int64_t hash_rows_ = 0;          // rows entered in the hash index
  int64_t grow_at_rows_ = 0;       // double the index before hash_rows_ exceeds this

  uint32_t* direct_rows_ = nullptr;  // direct_limit_ entries: row number + 1, or 0 for none
  uint64_t direct_limit_ = 0;        // 0 or a power of two <= kMaxDirectKeys
  int64_t small_rows_in_hash_ = 0;   // rows in the hash whose key is below kMaxDirectKeys
};

}  // namespace tessera::server

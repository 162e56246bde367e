#include "server/embedding_table.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

#include "core/huge_pages.h"
#include "core/logging.h"
#include "kernels/random_math.h"

namespace tessera::server {
namespace {

// The index hashes keys with a salt so that its hash is unrelated to the sharding hash
// (core/shard_map.h: SlotOf = Mix64(...) mod 16384): all keys of one shard share those bits, and
// an index that probed on them would cluster. It also takes the *top* bits of the mix.
constexpr uint64_t kIndexSalt = 0x2545F4914F6CDD1Dull;

inline uint64_t IndexHash(uint64_t key) { return kernels::SplitMix64(key ^ kIndexSalt); }

// Rows per arena chunk: a power of two (row -> chunk is a shift) of at most 4096 rows and about
// 2 MiB, so the partly filled last chunk is a negligible part of a large table and a small
// table does not hold megabytes. 4096 rows of a 16-byte multiple stride are a multiple of 64 KiB,
// a whole number of pages; chunks of wider rows are rounded up to whole pages.
constexpr size_t kMaxRowsPerChunk = 4096;
constexpr size_t kTargetChunkBytes = size_t{2} << 20;
constexpr size_t kPageBytes = 4096;

// The direct index starts at this many keys (a 4 KiB page) and grows only while the rows with keys
// below kMaxDirectKeys number at least 1 / kDirectFill of its limit.
constexpr uint64_t kMinDirectKeys = 1024;
constexpr uint64_t kDirectFill = 4;

// Load factor 0.8 as 4/5 in integers.
inline int64_t MaxRowsForSlots(uint64_t num_slots) {
  return static_cast<int64_t>(num_slots / 5 * 4 + (num_slots % 5) * 4 / 5);
}

// Anonymous mappings rather than malloc: untouched pages are not resident (the unused end of the
// last chunk costs nothing) and munmap returns memory to the OS at once, where glibc's
// adaptive mmap threshold would keep freed index arrays on the heap. A mapping of kHugeMapBytes
// or more (a large index, a slab of chunks) starts on a 2 MiB boundary and asks for huge pages
// (core/huge_pages.h): the shard's lookups and row accesses, random over hundreds of MB, then
// miss the TLB once per 2 MiB instead of once per 4 KiB, and creating rows faults once per 2 MiB.
constexpr size_t kHugePageBytes = size_t{2} << 20;
constexpr size_t kHugeMapBytes = 2 * kHugePageBytes;

void UnmapBytes(void* p, size_t bytes) {
  if (p != nullptr) TS_CHECK_EQ(munmap(p, bytes), 0) << std::strerror(errno);
}

void* MapBytes(size_t bytes) {
  const bool huge = bytes >= kHugeMapBytes;
  const size_t mapped = huge ? bytes + kHugePageBytes : bytes;
  void* p = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  TS_CHECK(p != MAP_FAILED) << "mmap of " << mapped << " bytes failed: " << std::strerror(errno);
  if (!huge) return p;
  // Trim the mapping to [aligned, aligned + bytes).
  const uintptr_t start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = start + mapped;
  if (aligned > start) UnmapBytes(p, aligned - start);
  if (end > aligned + bytes)
    UnmapBytes(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  AdviseHugePages(reinterpret_cast<void*>(aligned), bytes);
  return reinterpret_cast<void*>(aligned);
}

size_t IndexBytes(uint64_t num_slots) {
  return static_cast<size_t>(num_slots) * (sizeof(uint64_t) + sizeof(uint32_t));
}

// The index lives in one mapping: keys first, then row numbers (8-byte aligned after the keys).
struct IndexArrays {
  uint64_t* keys;
  uint32_t* rows;
};

IndexArrays MapIndex(uint64_t num_slots) {
  char* base = static_cast<char*>(MapBytes(IndexBytes(num_slots)));
  IndexArrays index{reinterpret_cast<uint64_t*>(base),
                    reinterpret_cast<uint32_t*>(base + num_slots * sizeof(uint64_t))};
  // 0xFF bytes make every row number kEmptySlot.
  std::memset(index.rows, 0xFF, num_slots * sizeof(uint32_t));
  return index;
}

}  // namespace

StatusOr<std::unique_ptr<EmbeddingTable>> EmbeddingTable::Create(const TableOptions& options) {
  if (options.dim <= 0 || options.dim > kMaxDim) {
    return Status::InvalidArgument("table " + std::to_string(options.table_id) + ": dim " +
                                   std::to_string(options.dim) + " not in [1, " +
                                   std::to_string(kMaxDim) + "]");
  }
  if (options.zero_tail < 0 || options.zero_tail > options.dim) {
    return Status::InvalidArgument("table " + std::to_string(options.table_id) + ": zero_tail " +
                                   std::to_string(options.zero_tail) +
                                   " not in [0, dim=" + std::to_string(options.dim) + "]");
  }
  if (!std::isfinite(options.init_std) || options.init_std < 0.0f) {
    return Status::InvalidArgument("table " + std::to_string(options.table_id) + ": init_std " +
                                   std::to_string(options.init_std) + " must be finite and >= 0");
  }
  if (options.initial_capacity < 0) {
    return Status::InvalidArgument("table " + std::to_string(options.table_id) +
                                   ": initial_capacity " +
                                   std::to_string(options.initial_capacity) + " is negative");
  }
  Status optimizer_status = kernels::ValidateOptimizerParams(options.optimizer);
  if (!optimizer_status.ok()) {
    return optimizer_status.WithContext("table " + std::to_string(options.table_id));
  }
  const int state_floats = kernels::OptimizerStateFloats(options.optimizer.kind, options.dim);
  TS_CHECK(state_floats >= 0 && state_floats <= 4 * kMaxDim) << state_floats;
  return std::unique_ptr<EmbeddingTable>(new EmbeddingTable(options, state_floats));
}

EmbeddingTable::EmbeddingTable(const TableOptions& options, int state_floats)
    : options_(options), state_floats_(state_floats) {
  stride_floats_ = (row_floats() + 3) / 4 * 4;
  const size_t stride_bytes = static_cast<size_t>(stride_floats_) * sizeof(float);
  size_t rows_per_chunk = kMaxRowsPerChunk;
  while (rows_per_chunk > 1 && rows_per_chunk * stride_bytes > kTargetChunkBytes) {
    rows_per_chunk /= 2;
  }
  chunk_shift_ = 0;
  while ((size_t{1} << chunk_shift_) < rows_per_chunk) ++chunk_shift_;
  chunk_mask_ = static_cast<uint32_t>(rows_per_chunk - 1);
  chunk_bytes_ = (rows_per_chunk * stride_bytes + kPageBytes - 1) / kPageBytes * kPageBytes;

  uint64_t num_slots = 16;
  while (MaxRowsForSlots(num_slots) < options_.initial_capacity) num_slots *= 2;
  AllocateIndex(num_slots);
}

EmbeddingTable::~EmbeddingTable() {
  for (size_t c = 0; c < std::min(chunks_.size(), kSmallTableChunks); ++c) {
    UnmapBytes(chunks_[c], chunk_bytes_);
  }
  for (const auto& [slab, bytes] : slabs_) UnmapBytes(slab, bytes);
  UnmapBytes(slot_keys_, IndexBytes(num_slots_));
  UnmapBytes(direct_rows_, direct_limit_ * sizeof(uint32_t));
}

void EmbeddingTable::AllocateIndex(uint64_t num_slots) {
  IndexArrays index = MapIndex(num_slots);
  slot_keys_ = index.keys;
  slot_rows_ = index.rows;
  num_slots_ = num_slots;
  slot_shift_ = 64;
  for (uint64_t s = num_slots; s > 1; s >>= 1) --slot_shift_;
  grow_at_rows_ = MaxRowsForSlots(num_slots);
}

void EmbeddingTable::RebuildIndex(uint64_t num_slots) {
  uint64_t* old_keys = slot_keys_;
  uint32_t* old_rows = slot_rows_;
  const uint64_t old_slots = num_slots_;
  AllocateIndex(num_slots);
  hash_rows_ = 0;
  // Every key is distinct and absent from the new index, so each takes the first empty slot;
  // keys the direct index now covers move there.
  const uint64_t mask = num_slots_ - 1;
  for (uint64_t s = 0; s < old_slots; ++s) {
    const uint32_t row = old_rows[s];
    if (row == kEmptySlot) continue;
    const uint64_t key = old_keys[s];
    if (key < direct_limit_) {
      direct_rows_[key] = row + 1;
      --small_rows_in_hash_;
      continue;
    }
    uint64_t slot = IndexHash(key) >> slot_shift_;
    while (slot_rows_[slot] != kEmptySlot) slot = (slot + 1) & mask;
    slot_keys_[slot] = key;
    slot_rows_[slot] = row;
    ++hash_rows_;
  }
  UnmapBytes(old_keys, IndexBytes(old_slots));
}

uint64_t EmbeddingTable::Probe(uint64_t key, uint64_t hash) const {
  const uint64_t mask = num_slots_ - 1;
  uint64_t slot = hash >> slot_shift_;
  // Terminates: the load factor stays <= 0.8, so an empty slot exists.
  while (slot_rows_[slot] != kEmptySlot && slot_keys_[slot] != key) slot = (slot + 1) & mask;
  return slot;
}

void EmbeddingTable::GrowDirect(uint64_t limit) {
  // A fresh anonymous mapping reads as zeros: every new entry is "no row".
  auto* grown = static_cast<uint32_t*>(MapBytes(limit * sizeof(uint32_t)));
  if (direct_rows_ != nullptr) {
    std::memcpy(grown, direct_rows_, direct_limit_ * sizeof(uint32_t));
    UnmapBytes(direct_rows_, direct_limit_ * sizeof(uint32_t));
  }
  direct_rows_ = grown;
  direct_limit_ = limit;
  if (small_rows_in_hash_ > 0) RebuildIndex(num_slots_);
}

float* EmbeddingTable::NewChunk() {
  if (chunks_.size() < kSmallTableChunks) return static_cast<float*>(MapBytes(chunk_bytes_));
  if (slab_left_ < chunk_bytes_) {
    // Whole chunks: no slab but the last has an untouched end that a huge page could make
    // resident.
    const size_t bytes = std::max<size_t>(1, kSlabBytes / chunk_bytes_) * chunk_bytes_;
    slabs_.emplace_back(static_cast<char*>(MapBytes(bytes)), bytes);
    slab_next_ = slabs_.back().first;
    slab_left_ = bytes;
  }
  float* chunk = reinterpret_cast<float*>(slab_next_);
  slab_next_ += chunk_bytes_;
  slab_left_ -= chunk_bytes_;
  return chunk;
}

uint32_t EmbeddingTable::NewRow(uint64_t key, bool init) {
  TS_CHECK_LT(num_rows_, static_cast<int64_t>(kEmptySlot) - 1)
      << "table " << options_.table_id << " is full";
  const uint32_t row = static_cast<uint32_t>(num_rows_);
  if ((row >> chunk_shift_) == chunks_.size()) chunks_.push_back(NewChunk());
  if (init) InitRow(key, RowPointer(row));
  ++num_rows_;
  return row;
}

float* EmbeddingTable::Insert(uint64_t key, bool init) {
  const bool small = options_.direct_index && key < kMaxDirectKeys;
  if (small && key >= direct_limit_) {
    uint64_t limit = std::max(kMinDirectKeys, direct_limit_);
    while (limit <= key) limit *= 2;
    // Rows with small keys: those of the direct index and those still in the hash.
    const int64_t small_rows = num_rows_ - hash_rows_ + small_rows_in_hash_;
    if (static_cast<uint64_t>(small_rows + 1) * kDirectFill >= limit) GrowDirect(limit);
  }
  const uint32_t row = NewRow(key, init);
  if (key < direct_limit_) {
    direct_rows_[key] = row + 1;
    return RowPointer(row);
  }
  if (hash_rows_ + 1 > grow_at_rows_) RebuildIndex(num_slots_ * 2);
  const uint64_t slot = Probe(key, IndexHash(key));
  slot_keys_[slot] = key;
  slot_rows_[slot] = row;
  ++hash_rows_;
  if (small) ++small_rows_in_hash_;
  return RowPointer(row);
}

void EmbeddingTable::InitialWeights(uint64_t key, float* out) const {
  const uint64_t stream = kernels::RowStream(options_.seed, options_.table_id, key);
  const int random_weights = options_.dim - options_.zero_tail;
  for (int j = 0; j < random_weights; ++j) {
    out[j] = options_.init_std * kernels::CounterNormal(stream, static_cast<uint32_t>(j));
  }
  for (int j = random_weights; j < options_.dim; ++j) out[j] = 0.0f;
}

void EmbeddingTable::InitRow(uint64_t key, float* row) const {
  InitialWeights(key, row);
  // The state may depend on the weights (FTRL derives z from them).
  kernels::InitOptimizerStateForRow(options_.optimizer, row, options_.dim);
  for (int j = row_floats(); j < stride_floats_; ++j) row[j] = 0.0f;
}

float* EmbeddingTable::FindOrCreate(uint64_t key) {
  float* row = Find(key);
  return row != nullptr ? row : Insert(key);
}

void EmbeddingTable::Restore(uint64_t key, const float* row) {
  float* dst = Find(key);
  if (dst == nullptr) dst = Insert(key, /*init=*/false);
  std::memcpy(dst, row, sizeof(float) * row_floats());
}

float* EmbeddingTable::Find(uint64_t key) {
  return const_cast<float*>(static_cast<const EmbeddingTable*>(this)->Find(key));
}

const float* EmbeddingTable::Find(uint64_t key) const {
  return key < direct_limit_ ? DirectRow(key) : HashedRow(key, IndexHash(key));
}

void EmbeddingTable::FindBatch(const uint64_t* keys, int64_t n, bool create, float** rows) {
  TS_DCHECK(n >= 0);
  // Blocks of kBlock keys: hashing a whole block and prefetching its slots before probing any
  // of them keeps many cache misses in flight instead of one per key (random keys over a large
  // index miss in every level of cache). kBlock bounds the stack scratch.
  constexpr int64_t kBlock = 64;
  uint64_t hashes[kBlock];
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t count = n - begin < kBlock ? n - begin : kBlock;
    const uint64_t* block_keys = keys + begin;
    float** block_rows = rows + begin;
    for (int64_t i = 0; i < count; ++i) {
      const uint64_t key = block_keys[i];
      if (key < direct_limit_) {
        __builtin_prefetch(direct_rows_ + key);
        continue;
      }
      const uint64_t hash = IndexHash(key);
      hashes[i] = hash;
      const uint64_t slot = hash >> slot_shift_;
      __builtin_prefetch(slot_rows_ + slot);
      __builtin_prefetch(slot_keys_ + slot);
    }
    for (int64_t i = 0; i < count; ++i) {
      const uint64_t key = block_keys[i];
      // Rows are not prefetched here: a whole batch of them would overflow the line-fill
      // buffers and be evicted before use; callers prefetch a few rows ahead of their use.
      // The limits are read here, not in the first pass: an Insert may have grown either index
      // (the direct limit only rises, so a key hashed above stays hashed or is now direct).
      float* row_ptr = key < direct_limit_ ? DirectRow(key) : HashedRow(key, hashes[i]);
      if (row_ptr == nullptr && create) row_ptr = Insert(key);
      block_rows[i] = row_ptr;
    }
  }
}

size_t EmbeddingTable::MemoryBytes() const {
  // A huge page is resident whole: the last slab counts up to the end of the 2 MiB page that its
  // last chunk ends in (earlier slabs hold whole chunks to their end).
  const uintptr_t next = reinterpret_cast<uintptr_t>(slab_next_);
  const size_t huge_tail =
      std::min<size_t>(slab_left_, ((next + kHugePageBytes - 1) & ~(kHugePageBytes - 1)) - next);
  return IndexBytes(num_slots_) + direct_limit_ * sizeof(uint32_t) + chunks_.size() * chunk_bytes_ +
         huge_tail + chunks_.capacity() * sizeof(float*) + slabs_.capacity() * sizeof(slabs_[0]);
}

}  // namespace tessera::server

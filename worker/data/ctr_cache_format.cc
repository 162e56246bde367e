#include "worker/data/ctr_cache_format.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "worker/data/internal/text_chunks.h"

namespace tessera::worker {
namespace {

// Records are copied to and from memory as they are, so the host must be little-endian as the
// file is (every platform we build for is).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the CTR cache assumes little-endian");

constexpr size_t kChecksumOffset = kCtrCacheHeaderBytes - 8;
// Below this many bytes of records per thread a read uses fewer threads.
constexpr size_t kMinReadBytesPerThread = 64 << 10;

void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

uint64_t Fnv1a64(const char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * 0x100000001b3ULL;
  return h;
}

std::string Hex(uint64_t v) {
  char buf[19];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

const char* OnOff(bool b) { return b ? "on" : "off"; }

}  // namespace

bool HasCtrCacheMagic(const char* data, size_t size) {
  return size >= sizeof(kCtrCacheMagic) &&
         std::memcmp(data, kCtrCacheMagic, sizeof(kCtrCacheMagic)) == 0;
}

void EncodeCtrCacheHeader(const CtrCacheHeader& h, char* out) {
  std::memset(out, 0, kCtrCacheHeaderBytes);
  std::memcpy(out, kCtrCacheMagic, sizeof(kCtrCacheMagic));
  PutU32(out + 8, h.version);
  PutU32(out + 12, static_cast<uint32_t>(kCtrCacheHeaderBytes));
  PutU32(out + 16, static_cast<uint32_t>(h.source_format));
  PutU32(out + 20, h.num_dense);
  PutU32(out + 24, h.num_fields);
  PutU32(out + 28, h.multi_hot ? 1 : 0);
  PutU32(out + 32, h.keys_per_record);
  PutU32(out + 36, h.bucketize_integers ? 1 : 0);
  PutU64(out + 40, h.hash_seed);
  PutU64(out + 48, h.num_records);
  PutU64(out + 56, h.RecordBytes());
  PutU32(out + 64, h.block_records);
  PutU32(out + 68, h.table_crc);
  PutU64(out + kChecksumOffset, Fnv1a64(out, kChecksumOffset));
}

uint64_t CtrCacheHeader::FileBytes() const {
  return kCtrCacheHeaderBytes + num_records * RecordBytes() + 4 * NumBlocks();
}

uint32_t CtrCacheBlockRecords(uint64_t record_bytes) {
  return static_cast<uint32_t>(std::max<uint64_t>(1, kCtrCacheBlockBytes / record_bytes));
}

StatusOr<CtrCacheHeader> DecodeCtrCacheHeader(const std::string& path, const char* data,
                                              size_t size) {
  const std::string where = "cache " + path + ": ";
  if (!HasCtrCacheMagic(data, size)) {
    return Status::InvalidArgument(where + "not a Tessera cache (it does not start with \"" +
                                   std::string(kCtrCacheMagic, sizeof(kCtrCacheMagic)) + "\")");
  }
  if (size < kCtrCacheHeaderBytes) {
    return Status::InvalidArgument(where + "truncated: " + std::to_string(size) +
                                   " bytes, shorter than the " +
                                   std::to_string(kCtrCacheHeaderBytes) + "-byte header");
  }
  // The version first (its place is fixed in every version): a newer layout may put the rest,
  // checksum included, elsewhere.
  CtrCacheHeader h;
  h.version = GetU32(data + 8);
  if (h.version != kCtrCacheVersion) {
    return Status::InvalidArgument(where + "version differs: the cache has version " +
                                   std::to_string(h.version) + ", this build reads version " +
                                   std::to_string(kCtrCacheVersion) +
                                   ": rebuild it with tessera convert");
  }
  const uint64_t stored = GetU64(data + kChecksumOffset);
  const uint64_t computed = Fnv1a64(data, kChecksumOffset);
  if (stored != computed) {
    return Status::InvalidArgument(where + "header checksum mismatch (stored " + Hex(stored) +
                                   ", computed " + Hex(computed) + "): the header is corrupt");
  }
  const uint32_t header_bytes = GetU32(data + 12);
  const uint32_t format = GetU32(data + 16);
  h.num_dense = GetU32(data + 20);
  h.num_fields = GetU32(data + 24);
  const uint32_t multi_hot = GetU32(data + 28);
  h.keys_per_record = GetU32(data + 32);
  const uint32_t bucketize = GetU32(data + 36);
  h.hash_seed = GetU64(data + 40);
  h.num_records = GetU64(data + 48);
  const uint64_t record_bytes = GetU64(data + 56);
  h.block_records = GetU32(data + 64);
  h.table_crc = GetU32(data + 68);
  h.multi_hot = multi_hot == 1;
  h.bucketize_integers = bucketize == 1;

  auto inconsistent = [&](const std::string& why) {
    return Status::InvalidArgument(where + "inconsistent header: " + why);
  };
  if (header_bytes != kCtrCacheHeaderBytes) {
    return inconsistent("header size " + std::to_string(header_bytes) + ", expected " +
                        std::to_string(kCtrCacheHeaderBytes));
  }
  if (format != static_cast<uint32_t>(CtrFormat::kCriteo) &&
      format != static_cast<uint32_t>(CtrFormat::kLibsvm) &&
      format != static_cast<uint32_t>(CtrFormat::kLibffm)) {
    return inconsistent("unknown source format " + std::to_string(format));
  }
  h.source_format = static_cast<CtrFormat>(format);
  if (multi_hot > 1 || bucketize > 1) return inconsistent("flags are not 0 or 1");
  if (h.num_dense > 1024 || h.keys_per_record > static_cast<uint32_t>(kCtrCacheMaxKeys)) {
    return inconsistent(std::to_string(h.num_dense) + " dense features and " +
                        std::to_string(h.keys_per_record) + " keys per record");
  }
  if (h.multi_hot ? h.num_fields != 1 : h.num_fields != h.keys_per_record) {
    return inconsistent(std::to_string(h.num_fields) + " fields with " +
                        std::to_string(h.keys_per_record) + " keys per record");
  }
  if (record_bytes != h.RecordBytes()) {
    return inconsistent("record size " + std::to_string(record_bytes) + ", expected " +
                        std::to_string(h.RecordBytes()));
  }
  if (h.block_records < 1 || h.block_records * record_bytes > 64 * kCtrCacheBlockBytes) {
    return inconsistent(std::to_string(h.block_records) + " records per checksummed block");
  }
  const uint64_t body = size - kCtrCacheHeaderBytes;
  if (h.num_records > body / record_bytes) {
    return Status::InvalidArgument(
        where + "truncated: the header announces " + std::to_string(h.num_records) +
        " records of " + std::to_string(record_bytes) + " bytes, the file holds " +
        std::to_string(body / record_bytes) + " (" + std::to_string(size) + " bytes in all)");
  }
  if (h.FileBytes() != size) {
    return Status::InvalidArgument(where + "the file has " + std::to_string(size) + " bytes, its " +
                                   std::to_string(h.num_records) + " records and their " +
                                   std::to_string(h.NumBlocks()) + " block checksums take " +
                                   std::to_string(h.FileBytes()) + " (truncated or extended)");
  }
  return h;
}

Status CheckCtrCacheOptions(const std::string& path, const CtrCacheHeader& header,
                            uint64_t hash_seed, bool bucketize_integers) {
  const std::string where = "cache " + path + ": ";
  if (header.hash_seed != hash_seed) {
    return Status::InvalidArgument(where + "hash seed differs: the cache was written with " +
                                   std::to_string(header.hash_seed) + ", the options ask for " +
                                   std::to_string(hash_seed));
  }
  if (header.source_format == CtrFormat::kCriteo &&
      header.bucketize_integers != bucketize_integers) {
    return Status::InvalidArgument(
        where + "bucketize_integers differs: the cache was written with " +
        OnOff(header.bucketize_integers) + ", the options ask for " + OnOff(bucketize_integers));
  }
  return OkStatus();
}

std::string CheckCtrCacheRecord(const CtrCacheHeader& header, const char* rec) {
  // The value rule of every CTR row (ValidateCtrRecord), on copies (per thread, reused): a
  // record's bytes are not float objects. The header bounds both counts (DecodeCtrCacheHeader).
  float label;
  static thread_local float dense[1024];
  static thread_local float values[kCtrCacheMaxKeys];
  const size_t num_dense = std::min<size_t>(header.num_dense, 1024);
  const size_t num_keys = std::min<size_t>(header.keys_per_record, kCtrCacheMaxKeys);
  const char* keys = rec + 4 + 4 * size_t{header.num_dense};
  std::memcpy(&label, rec, 4);
  if (num_dense > 0) std::memcpy(dense, rec + 4, 4 * num_dense);
  if (num_keys > 0) std::memcpy(values, keys + 8 * size_t{header.keys_per_record}, 4 * num_keys);
  const Status valid = ValidateCtrRecord(label, dense, static_cast<int>(num_dense), values,
                                         static_cast<int>(num_keys));
  if (!valid.ok()) return valid.message();
  // Keys: the padding key only as multi-hot padding (value 0, after the last real key).
  bool padding = false;
  for (size_t j = 0; j < num_keys; ++j) {
    uint64_t key;
    uint32_t value_bits;
    std::memcpy(&key, keys + 8 * j, 8);
    std::memcpy(&value_bits, keys + 8 * size_t{header.keys_per_record} + 4 * j, 4);
    const bool pad = key == kCtrCachePadKey;
    if (pad && (!header.multi_hot || value_bits != 0)) {
      return "key " + std::to_string(j) + " is the padding key" +
             (header.multi_hot ? " with a value" : " in a one-hot record");
    }
    if (!pad && padding) return "key " + std::to_string(j) + " follows the padding";
    padding |= pad;
  }
  return "";
}

StatusOr<CtrCacheView> CtrCacheView::Open(const std::string& path, const char* data, size_t size) {
  CtrCacheView view;
  TS_ASSIGN_OR_RETURN(view.header_, DecodeCtrCacheHeader(path, data, size));
  view.path_ = path;
  view.records_ = data + kCtrCacheHeaderBytes;
  view.crc_table_ = view.records_ + view.header_.num_records * view.header_.RecordBytes();
  const uint64_t table_bytes = 4 * view.header_.NumBlocks();
  const uint32_t crc = static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(view.crc_table_), table_bytes));
  if (crc != view.header_.table_crc) {
    return Status::InvalidArgument(
        "cache " + path + ": the block checksum table is corrupt (" + "CRC-32 " + Hex(crc) +
        ", the header says " + Hex(view.header_.table_crc) + "); rebuild it with tessera convert");
  }
  view.checked_.assign(view.header_.NumBlocks(), 0);
  return view;
}

Status CtrCacheView::CheckBlocks(uint64_t first_block, uint64_t end_block, int num_threads) {
  const uint64_t record_bytes = header_.RecordBytes();
  std::vector<uint64_t> todo;
  for (uint64_t b = first_block; b < end_block; ++b) {
    if (!checked_[b]) todo.push_back(b);
  }
  if (todo.empty()) return OkStatus();
  const size_t num_chunks = std::clamp<size_t>(todo.size(), 1, std::max(num_threads, 1));
  std::vector<std::string> errors(num_chunks);
  internal::RunChunks(num_chunks, "checking a cache", [&](size_t k) {
    const size_t end = internal::SplitPoint(todo.size(), k + 1, num_chunks);
    for (size_t i = internal::SplitPoint(todo.size(), k, num_chunks); i < end; ++i) {
      const uint64_t b = todo[i];
      const uint64_t first = b * header_.block_records;
      const uint64_t last = std::min<uint64_t>(first + header_.block_records, header_.num_records);
      const char* begin = records_ + first * record_bytes;
      const uint32_t crc = static_cast<uint32_t>(
          crc32_z(0, reinterpret_cast<const Bytef*>(begin), (last - first) * record_bytes));
      const uint32_t stored = GetU32(crc_table_ + 4 * b);
      if (crc != stored) {
        errors[k] = "cache " + path_ + ": block " + std::to_string(b) + " (records " +
                    std::to_string(first) + ".." + std::to_string(last - 1) +
                    "): checksum mismatch (CRC-32 " + Hex(crc) + ", stored " + Hex(stored) +
                    "): the file is corrupt; rebuild it with tessera convert";
        return;
      }
      for (uint64_t r = first; r < last; ++r) {
        const std::string why = CheckCtrCacheRecord(header_, records_ + r * record_bytes);
        if (!why.empty()) {
          errors[k] = "cache " + path_ + ": record " + std::to_string(r) + ": " + why;
          return;
        }
      }
    }
  });
  for (const std::string& e : errors) {
    if (!e.empty()) return Status::InvalidArgument(e);
  }
  for (uint64_t b : todo) checked_[b] = 1;
  return OkStatus();
}

Status CtrCacheView::Read(uint64_t first, uint64_t n, int num_threads,
                          std::vector<CtrBlock>* scratch, CtrBlock* block) {
  if (first > header_.num_records || n > header_.num_records - first) {
    return Status::InvalidArgument("cache " + path_ + ": records " + std::to_string(first) + " + " +
                                   std::to_string(n) + " are past its end");
  }
  if (n > 0) {
    Status checked = CheckBlocks(first / header_.block_records,
                                 (first + n - 1) / header_.block_records + 1, num_threads);
    if (!checked.ok()) {
      block->Clear();
      return checked;
    }
  }
  ReadCtrCacheRecords(header_, records_, first, n, num_threads, scratch, block);
  return OkStatus();
}

void ReadCtrCacheRecords(const CtrCacheHeader& header, const char* records, uint64_t first,
                         uint64_t n, int num_threads, std::vector<CtrBlock>* scratch,
                         CtrBlock* block) {
  const uint64_t record_bytes = header.RecordBytes();
  const size_t num_dense = header.num_dense;
  const size_t num_keys = header.keys_per_record;
  const size_t keys_offset = 4 + 4 * num_dense;
  const size_t values_offset = keys_offset + 8 * num_keys;
  const size_t num_chunks = std::clamp<size_t>(n * record_bytes / kMinReadBytesPerThread, 1,
                                               static_cast<size_t>(std::max(num_threads, 1)));
  const char* begin = records + first * record_bytes;

  if (!header.multi_hot) {
    // Fixed width out as well: every thread copies its records straight into place. Resizing
    // without clearing first skips zero-filling when the block keeps its size across calls.
    block->offsets.clear();
    block->labels.resize(n);
    block->dense.resize(n * num_dense);
    block->keys.resize(n * num_keys);
    block->values.resize(n * num_keys);
    internal::RunChunks(num_chunks, "reading a cache", [&](size_t k) {
      const size_t r_end = internal::SplitPoint(n, k + 1, num_chunks);
      for (size_t r = internal::SplitPoint(n, k, num_chunks); r < r_end; ++r) {
        const char* rec = begin + r * record_bytes;
        std::memcpy(&block->labels[r], rec, 4);
        if (num_dense > 0) {
          std::memcpy(block->dense.data() + r * num_dense, rec + 4, 4 * num_dense);
        }
        if (num_keys > 0) {
          std::memcpy(block->keys.data() + r * num_keys, rec + keys_offset, 8 * num_keys);
          std::memcpy(block->values.data() + r * num_keys, rec + values_offset, 4 * num_keys);
        }
      }
    });
    return;
  }

  // Multi-hot: each thread builds its rows in a local block (vector headers of neighbouring
  // blocks would share cache lines), then they are appended in order.
  if (scratch->size() < num_chunks) scratch->resize(num_chunks);
  internal::RunChunks(num_chunks, "reading a cache", [&](size_t k) {
    CtrBlock local = std::move((*scratch)[k]);
    local.Clear();
    local.offsets.push_back(0);
    const size_t r_end = internal::SplitPoint(n, k + 1, num_chunks);
    for (size_t r = internal::SplitPoint(n, k, num_chunks); r < r_end; ++r) {
      const char* rec = begin + r * record_bytes;
      float label;
      std::memcpy(&label, rec, 4);
      local.labels.push_back(label);
      const size_t dense_at = local.dense.size();
      local.dense.resize(dense_at + num_dense);
      if (num_dense > 0) std::memcpy(local.dense.data() + dense_at, rec + 4, 4 * num_dense);
      size_t count = num_keys;  // without the trailing padding
      for (; count > 0; --count) {
        uint64_t key;
        uint32_t value_bits;
        std::memcpy(&key, rec + keys_offset + 8 * (count - 1), 8);
        std::memcpy(&value_bits, rec + values_offset + 4 * (count - 1), 4);
        if (key != kCtrCachePadKey || value_bits != 0) break;
      }
      const size_t keys_at = local.keys.size();
      local.keys.resize(keys_at + count);
      local.values.resize(keys_at + count);
      if (count > 0) {
        std::memcpy(local.keys.data() + keys_at, rec + keys_offset, 8 * count);
        std::memcpy(local.values.data() + keys_at, rec + values_offset, 4 * count);
      }
      local.offsets.push_back(static_cast<uint32_t>(local.keys.size()));
    }
    (*scratch)[k] = std::move(local);
  });
  block->Clear();
  if (n == 0) return;
  block->offsets.push_back(0);
  for (size_t k = 0; k < num_chunks; ++k) AppendCtrBlock((*scratch)[k], true, block);
}

}  // namespace tessera::worker

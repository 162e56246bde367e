// The binary cache's file format: the rows of a Criteo/libsvm/libffm text file already parsed and
// hashed, as fixed-width records that CtrReader (worker/data/ctr_reader.h) maps and copies out
// several times faster than it parses the text. This module owns the layout: the header's
// encoding and checks and the copy of records into blocks. WriteCtrCache
// (worker/data/ctr_cache.h, `tessera convert`) writes such files.
//
// File layout, little-endian:
//   header, kCtrCacheHeaderBytes bytes:
//     0  char[8] magic "TSRCACHE"
//     8  u32 version (kCtrCacheVersion)
//    12  u32 header size in bytes
//    16  u32 source format (CtrFormat: 1 criteo, 2 libsvm, 3 libffm)
//    20  u32 num_dense
//    24  u32 num_fields (1 when multi-hot)
//    28  u32 multi_hot (0 or 1)
//    32  u32 keys per record (num_fields when one-hot, the longest line's when multi-hot)
//    36  u32 bucketize_integers (0 or 1; Criteo only)
//    40  u64 hash seed
//    48  u64 number of records
//    56  u64 record size in bytes (4 + 4 * num_dense + 12 * keys per record)
//    64  u32 records per block (B >= 1; the last block may hold fewer)
//    68  u32 CRC-32 of the block checksum table
//    72  zeros up to the checksum
//   120  u64 FNV-1a 64 of header bytes [0, 120)
//   then the records, each: f32 label, f32 dense[num_dense], u64 keys[K], f32 values[K];
//   then the block checksum table: u32 CRC-32 (zlib) of each block's record bytes, one per
//   ceil(records / B) blocks.
// Multi-hot rows are padded to K keys with kCtrCachePadKey and value 0; the reader drops the
// trailing pad entries again, so a row reads back with its own key list. A multi-hot file whose
// longest line has more than kCtrCacheMaxKeys features is refused (the padding would dwarf the
// data; read the text instead).
//
// Nothing of a cache is trusted unchecked: the header by its checksum, the table by its CRC-32,
// each block by its CRC-32 before any of its records is used, and every record by
// CheckCtrCacheRecord (label 0 or 1, finite dense features and values, keys in range). A cache of
// another version is refused ("rebuild it with tessera convert"). Records are numbered from 0 in
// messages.
//
// Threads: the free functions are thread-safe (no shared state); a CtrCacheView has one user.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "worker/data/ctr_schema.h"

namespace tessera::worker {

inline constexpr char kCtrCacheMagic[8] = {'T', 'S', 'R', 'C', 'A', 'C', 'H', 'E'};
inline constexpr uint32_t kCtrCacheVersion = 2;
inline constexpr size_t kCtrCacheHeaderBytes = 128;
inline constexpr uint64_t kCtrCachePadKey = ~uint64_t{0};
inline constexpr int kCtrCacheMaxKeys = 1024;

// The header's fields (see the layout above).
struct CtrCacheHeader {
  uint32_t version = kCtrCacheVersion;
  CtrFormat source_format = CtrFormat::kAuto;
  uint32_t num_dense = 0;
  uint32_t num_fields = 0;
  bool multi_hot = false;
  uint32_t keys_per_record = 0;
  bool bucketize_integers = false;
  uint64_t hash_seed = 0;
  uint64_t num_records = 0;
  uint32_t block_records = 1;  // records per checksummed block
  uint32_t table_crc = 0;      // CRC-32 of the block checksum table

  uint64_t RecordBytes() const {
    return 4 + 4 * uint64_t{num_dense} + 12 * uint64_t{keys_per_record};
  }
  uint64_t NumBlocks() const { return (num_records + block_records - 1) / block_records; }
  // The file's size: header, records, block checksum table.
  uint64_t FileBytes() const;
};

// About this many bytes of records per checksummed block.
inline constexpr uint64_t kCtrCacheBlockBytes = 64 << 10;
// Records per block for records of `record_bytes` bytes.
uint32_t CtrCacheBlockRecords(uint64_t record_bytes);

// True when the bytes start with kCtrCacheMagic.
bool HasCtrCacheMagic(const char* data, size_t size);

// Writes the header bytes, checksum included. REQUIRES: out has kCtrCacheHeaderBytes bytes.
void EncodeCtrCacheHeader(const CtrCacheHeader& header, char* out);

// Decodes the header of a cache file of `size` bytes at `data` and checks it: magic, version,
// checksum, consistent fields and a file size that holds exactly the records it announces and
// their block checksum table. InvalidArgument "cache PATH: <why>" otherwise (e.g. "truncated:
// the header announces 9999 records of 368 bytes, the file holds 2717").
StatusOr<CtrCacheHeader> DecodeCtrCacheHeader(const std::string& path, const char* data,
                                              size_t size);

// OK when a cache with `header` may be read with a reader's `hash_seed` and
// `bucketize_integers` (CtrReadOptions): the same hash seed and, for Criteo, the same
// bucketize_integers; else InvalidArgument naming the field and both values, e.g.
// "cache PATH: hash seed differs: the cache was written with 1, the options ask for 2".
Status CheckCtrCacheOptions(const std::string& path, const CtrCacheHeader& header,
                            uint64_t hash_seed, bool bucketize_integers);

// Empty when `record` (header.RecordBytes() bytes) may be trained on: the value rule of every
// CTR row (ValidateCtrRecord in ctr_schema.h: label 0 or 1, dense features and values finite and
// within bounds), no pad key in a one-hot record, multi-hot padding (kCtrCachePadKey with value
// 0) only after the last real key. Else why not ("label 2 is not 0 or 1").
std::string CheckCtrCacheRecord(const CtrCacheHeader& header, const char* record);

// A cache file in memory (mapped by the caller, who keeps it alive) whose blocks are checked the
// first time their records are read.
class CtrCacheView {
 public:
  // Decodes the header (DecodeCtrCacheHeader) and checks the block checksum table's CRC-32.
  static StatusOr<CtrCacheView> Open(const std::string& path, const char* data, size_t size);
  const CtrCacheHeader& header() const { return header_; }
  // Copies records [first, first + n) into *block (ReadCtrCacheRecords) once every block they
  // lie in has passed its CRC-32 and every record of those blocks CheckCtrCacheRecord; else
  // InvalidArgument "cache PATH: block B (records F..L): checksum mismatch (...)" or "cache
  // PATH: record R: <why>", and *block is left empty. Checks run on up to num_threads threads.
  Status Read(uint64_t first, uint64_t n, int num_threads, std::vector<CtrBlock>* scratch,
              CtrBlock* block);

 private:
  CtrCacheView() = default;
  Status CheckBlocks(uint64_t first_block, uint64_t end_block, int num_threads);

  std::string path_;
  CtrCacheHeader header_;
  const char* records_ = nullptr;    // the first record
  const char* crc_table_ = nullptr;  // NumBlocks() little-endian u32
  std::vector<uint8_t> checked_;     // per block: passed its checks
};

// Copies records [first, first + n) of a cache into *block (replacing its rows; multi-hot: the
// padding dropped), with up to num_threads threads (the calling thread and std::threads joined
// before returning). `records` is the first record (the byte after the header); *scratch holds
// per-thread blocks reused across calls. REQUIRES: the records exist (DecodeCtrCacheHeader) and
// were checked (CtrCacheView::Read does both).
void ReadCtrCacheRecords(const CtrCacheHeader& header, const char* records, uint64_t first,
                         uint64_t n, int num_threads, std::vector<CtrBlock>* scratch,
                         CtrBlock* block);

}  // namespace tessera::worker

// Click-through-rate training data: readers of Criteo TSV, libsvm and libffm/libFM text and of
// the binary cache (worker/data/ctr_cache_format.h), which turn each row into a label, dense
// features and uint64 categorical keys (worker/data/ctr_schema.h). A reader takes one partition
// of a file (worker r of n), so workers share one file without coordination, and streams it in
// chunks parsed by several threads.
//
// Formats (one row per line; "\r\n" reads as "\n", and a text file whose first line ends with a
// lone "\r" is read with "\r" as its line end; blank lines are skipped; a UTF-8 byte-order
// mark at the start of the file is skipped):
//  * criteo: exactly 40 tab-separated fields (a trailing empty field counts): the label (0 or 1),
//    I1..I13 (optional signed decimal integers that fit in int64) and C1..C26 (empty, or hex
//    digits of any length, either case). Dense feature i is sign(Ii) * log(1 + |Ii|), 0 when Ii
//    is empty: negative integers (Criteo's I2 has -1..-3) keep their own values rather than
//    becoming 0 as under the usual clip-then-log transform. Ck has field k-1 and key
//    HashFeature(seed, k-1, lowercase(Ck)); an empty Ck is hashed as "" (its own key per field).
//    With bucketize_integers, Ii is also a categorical field 26+i-1 with key HashFeature(seed,
//    26+i-1, uint64(CriteoBucket(Ii))), or HashFeature(seed, 26+i-1, "") when empty. Row keys:
//    C1..C26, then the I1..I13 buckets.
//  * libsvm: "label idx:val idx:val ..." separated by spaces/tabs; the label is 0, 1, -1 or +1
//    (any spelling std::from_chars reads as those, e.g. "1.0"; -1 reads as 0); idx an unsigned
//    decimal that fits in uint64; val a float, finite and within +-kMaxAbsDataValue = 1e6
//    (worker/data/value_limits.h; "nan", "inf" and 3e38 are bad lines).
//  * libffm (also libFM with fields): "label field:idx:val ...", field an unsigned decimal < 2^32.
// libsvm/libffm layout: before reading, Open scans the token counts of every line of the whole
// file (not only the partition, so that all partitions agree; bad lines included, a cheap pass
// with num_threads threads). When every non-blank line has the same number of features N, the
// data is one-hot: feature i of a line is categorical field i (num_fields = N). Otherwise it is
// multi-hot: one field holding a variable list of keys per row, meant to be sum-pooled
// (num_fields = 1). Keys: libsvm one-hot HashFeature(seed, i, idx); libsvm multi-hot
// HashFeature(seed, 0, idx); libffm HashFeature(seed, field, idx) with the field number written
// in the token in both layouts (so field numbers separate key namespaces, while in the one-hot
// layout the position in the line decides which field slot of the row holds the key).
//
// Auto-detection (kAuto) looks at the start of the whole file: the cache magic "TSRCACHE" ->
// cache; else the first non-blank line: 40 tab-separated fields -> criteo; a first feature
// token with two ':' -> libffm; else libsvm. An empty file reads as libsvm with no rows.
//
// Bad lines: a wrong field count, a label other than the above, a non-numeric or too large
// integer, a bad hex value, a token that does not parse or a value out of range: every row the
// text parsers accept meets ValidateCtrRecord (worker/data/ctr_schema.h). Unless skip_bad_lines,
// Next fails with InvalidArgument "PATH:LINE: <what is wrong> (<the line, truncated>)" where LINE
// is the 1-based line number in the whole file, also when reading a later partition; with
// skip_bad_lines the line is counted (bad_lines()) and skipped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "worker/data/ctr_schema.h"

namespace tessera::worker {

struct CtrReadOptions {
  // File format; kAuto detects it.
  CtrFormat format = CtrFormat::kAuto;
  // Count bad lines and go on instead of failing on the first one.
  bool skip_bad_lines = false;
  // Parser threads per Next call, >= 1 (including the calling thread).
  int num_threads = 2;
  // This reader's share of the file. Text: the lines whose first byte lies in
  // [partition * size / num_partitions, (partition + 1) * size / num_partitions), size in bytes.
  // Cache: records [partition * n / num_partitions, (partition + 1) * n / num_partitions).
  // Partitions 0..num_partitions-1 together read every row exactly once.
  // REQUIRES: num_partitions >= 1, 0 <= partition < num_partitions (else InvalidArgument).
  int partition = 0;
  int num_partitions = 1;
  // Seed of HashFeature. A cache must have been written with the same seed.
  uint64_t hash_seed = 0;
  // Criteo: I1..I13 also as categorical keys of fields 26..38 (CriteoBucket). A cache must have
  // been written with the same setting.
  bool bucketize_integers = false;
  // Bytes of text (or of cache records) parsed per Next call, split among the threads; >= 1.
  size_t chunk_bytes = 8 << 20;
};

// Streaming reader of one partition of a CTR file (text or cache).
// Thread-compatible: one caller at a time. Next starts up to num_threads - 1 std::threads and
// joins them before it returns; no callbacks run on them. Holds the file mapped while it lives.
class CtrReader {
 public:
  // Opens `path`, detects its format (for kAuto) and its layout (libsvm/libffm scan; cache
  // header, which must match options.hash_seed, options.bucketize_integers and this build's
  // cache version). Errors: NotFound, InvalidArgument (bad options, unreadable file, a refused
  // cache with the reason).
  static StatusOr<std::unique_ptr<CtrReader>> Open(const std::string& path,
                                                   const CtrReadOptions& options);
  ~CtrReader();
  CtrReader(const CtrReader&) = delete;
  CtrReader& operator=(const CtrReader&) = delete;

  const CtrSchema& schema() const { return schema_; }

  // Clears *block and fills it with the rows of the next ~chunk_bytes of the partition (at least
  // one row). Returns false, with *block empty, at the end of the partition. On a bad line
  // (without skip_bad_lines) returns the error and stays where it was. Bad lines skipped are
  // counted, not logged: the caller reports bad_lines().
  StatusOr<bool> Next(CtrBlock* block);

  // Reads the whole partition in one chunk (for small files and tests); fills *schema unless it
  // is null. Logs a warning when bad lines were skipped.
  static StatusOr<CtrBlock> ReadAll(const std::string& path, const CtrReadOptions& options,
                                    CtrSchema* schema);

  // Bad lines skipped by Next since Open (a line read again after Seek or Rewind counts again).
  int64_t bad_lines() const { return bad_lines_; }
  // "PATH:LINE: reason (text)" of the first bad line skipped, "" if none.
  const std::string& first_bad_line() const { return first_bad_line_; }

  // Where the next unread row is: a byte offset in the file (text) or a record index in the
  // file (cache). For checkpoints: Seek(position()) on a reader of the same file and options
  // resumes exactly there.
  int64_t position() const { return position_; }
  // InvalidArgument unless `position` lies in this partition ([start, end], end meaning
  // "finished") and, for text, at a line start.
  Status Seek(int64_t position);
  // Back to the partition start (next epoch).
  void Rewind() { position_ = begin_; }

 private:
  struct Impl;
  CtrReader();
  StatusOr<bool> NextText(CtrBlock* block);
  StatusOr<bool> NextCache(CtrBlock* block);

  std::unique_ptr<Impl> impl_;
  CtrSchema schema_;
  int64_t begin_ = 0;  // partition [begin_, end_): bytes (text) or records (cache)
  int64_t end_ = 0;
  int64_t position_ = 0;
  int64_t bad_lines_ = 0;
  std::string first_bad_line_;
};

}  // namespace tessera::worker

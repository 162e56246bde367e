// The CTR text readers (worker/data/ctr_reader.h) and the schema they derive: Criteo TSV, libsvm
// and libffm lines, format and layout detection, chunked reading and partitions. Besides "no
// crash, no sanitizer report": every block is well formed for the schema (labels 0 or 1, finite
// dense features and values, one key per field when one-hot, monotone offsets when multi-hot);
// reading in small chunks gives the rows of reading the file at once; the partitions together
// give the rows of the whole file; a reader can Seek to its own position.
//
// Input: two options bytes, then the file's bytes.
#include <cmath>
#include <memory>

#include "fuzz/fuzz_util.h"
#include "worker/data/ctr_reader.h"
#include "worker/data/ctr_schema.h"

namespace tessera::fuzz {
namespace {

using worker::CtrBlock;
using worker::CtrFormat;
using worker::CtrReader;
using worker::CtrReadOptions;
using worker::CtrSchema;

void CheckBlock(const CtrSchema& schema, const CtrBlock& b) {
  const size_t n = b.size();
  TS_FUZZ_CHECK(b.dense.size() == n * static_cast<size_t>(schema.num_dense));
  for (float l : b.labels) TS_FUZZ_CHECK(l == 0.0f || l == 1.0f);
  for (float d : b.dense) TS_FUZZ_CHECK(std::isfinite(d));
  for (float v : b.values) TS_FUZZ_CHECK(std::isfinite(v));
  TS_FUZZ_CHECK(b.values.size() == b.keys.size());
  if (schema.multi_hot) {
    TS_FUZZ_CHECK(b.offsets.size() == n + 1 && b.offsets.front() == 0);
    for (size_t r = 0; r < n; ++r) {
      TS_FUZZ_CHECK(b.offsets[r] <= b.offsets[r + 1]);
      TS_FUZZ_CHECK(b.offsets[r + 1] - b.offsets[r] <= static_cast<uint32_t>(schema.max_keys));
    }
    TS_FUZZ_CHECK(b.offsets.back() == b.keys.size());
  } else {
    TS_FUZZ_CHECK(b.offsets.empty());
    TS_FUZZ_CHECK(b.keys.size() == n * static_cast<size_t>(schema.num_fields));
  }
}

bool SameRows(const CtrBlock& a, const CtrBlock& b) {
  return a.labels == b.labels && a.dense == b.dense && a.keys == b.keys && a.values == b.values &&
         a.offsets == b.offsets;
}

// Reads one partition with Next, checking each block; appends its rows to *all. False when Open
// or a Next fails.
bool ReadPartition(const std::string& path, const CtrReadOptions& options, CtrSchema* schema,
                   CtrBlock* all, int64_t* bad_lines) {
  StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
  if (!reader.ok()) return false;
  *schema = (*reader)->schema();
  TS_FUZZ_CHECK(schema->format == CtrFormat::kCriteo || schema->format == CtrFormat::kLibsvm ||
                schema->format == CtrFormat::kLibffm);
  TS_FUZZ_CHECK(!schema->Describe().empty());
  TS_FUZZ_CHECK(worker::CheckCtrSchema(*schema, *schema).ok());
  if (schema->multi_hot && all->offsets.empty()) all->offsets.push_back(0);
  CtrBlock block;
  for (int calls = 0;; ++calls) {
    TS_FUZZ_CHECK(calls < 1 << 20);
    StatusOr<bool> more = (*reader)->Next(&block);
    if (!more.ok()) return false;
    if (!*more) {
      TS_FUZZ_CHECK(block.size() == 0);
      break;
    }
    TS_FUZZ_CHECK(block.size() > 0);
    CheckBlock(*schema, block);
    worker::AppendCtrBlock(block, schema->multi_hot, all);
  }
  TS_FUZZ_CHECK((*reader)->Seek((*reader)->position()).ok());
  *bad_lines += (*reader)->bad_lines();
  return true;
}

}  // namespace
}  // namespace tessera::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::worker;
  using tessera::fuzz::ReadPartition;
  if (size < 2) return 0;
  const uint8_t opts = data[0];
  const std::string path = tessera::fuzz::InputFile(data + 2, size - 2);
  static constexpr CtrFormat kFormats[] = {CtrFormat::kAuto, CtrFormat::kCriteo, CtrFormat::kLibsvm,
                                           CtrFormat::kLibffm};
  CtrReadOptions options;
  options.format = kFormats[opts & 3];
  options.skip_bad_lines = (opts & 4) != 0;
  options.bucketize_integers = (opts & 8) != 0;
  options.num_threads = 1;
  options.hash_seed = opts >> 6;
  // Partitions for a quarter of the inputs: each reader maps the file, and unmapping dominates.
  const int num_partitions = (opts & 0x30) == 0x30 ? 2 + (opts >> 6) % 2 : 1;

  // The whole file at once (ReadAll), then in chunks of 1..256 bytes.
  CtrSchema schema;
  tessera::StatusOr<CtrBlock> at_once = CtrReader::ReadAll(path, options, &schema);
  if (at_once.ok()) tessera::fuzz::CheckBlock(schema, *at_once);
  options.chunk_bytes = 1 + data[1];
  CtrBlock chunked;
  int64_t bad_lines = 0;
  const bool chunked_ok = ReadPartition(path, options, &schema, &chunked, &bad_lines);
  TS_FUZZ_CHECK(chunked_ok == at_once.ok());
  if (!chunked_ok) return 0;
  TS_FUZZ_CHECK(tessera::fuzz::SameRows(chunked, *at_once));
  if (num_partitions == 1) return 0;

  CtrBlock joined;
  int64_t joined_bad_lines = 0;
  options.num_partitions = num_partitions;
  for (int p = 0; p < num_partitions; ++p) {
    options.partition = p;
    CtrSchema part_schema;
    TS_FUZZ_CHECK(ReadPartition(path, options, &part_schema, &joined, &joined_bad_lines));
    TS_FUZZ_CHECK(part_schema.num_fields == schema.num_fields &&
                  part_schema.multi_hot == schema.multi_hot && part_schema.format == schema.format);
  }
  TS_FUZZ_CHECK(joined_bad_lines == bad_lines);
  TS_FUZZ_CHECK(tessera::fuzz::SameRows(joined, chunked));
  return 0;
}

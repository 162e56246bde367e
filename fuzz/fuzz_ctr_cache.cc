// The binary cache reader (worker/data/ctr_cache_format.h through CtrReader), two ways:
//  * raw: the input is a cache file; the reader's hash seed and bucketize_integers are taken
//    from the header's bytes so that a matching header gets past the option check;
//  * converted: the input is a CTR text file, written as a cache by WriteCtrCache (so the seeds
//    stay valid caches whatever the format's version), then 0..7 bytes of it XORed at chosen
//    offsets. Without XORs the cache must read back exactly the rows of the text.
// Every block read is well formed for the schema (sizes, offsets, the padding dropped).
//
// Input, raw: byte 0 even, byte 1 options, then the cache. Converted: byte 0 odd (bits 1-3: the
// number of XORs), byte 1 options, then 5 bytes per XOR (u32 offset, modulo the cache's size, and
// the byte to XOR), then the text.
#include <unistd.h>

#include <cstring>
#include <memory>

#include "fuzz/fuzz_util.h"
#include "worker/data/ctr_cache.h"
#include "worker/data/ctr_reader.h"

namespace tessera::fuzz {
namespace {

using worker::CtrBlock;
using worker::CtrFormat;
using worker::CtrReader;
using worker::CtrReadOptions;
using worker::CtrSchema;

void CheckShape(const CtrSchema& schema, const CtrBlock& b) {
  const size_t n = b.size();
  TS_FUZZ_CHECK(b.dense.size() == n * static_cast<size_t>(schema.num_dense));
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

// Reads the cache at `path` with Next; false when Open or a Next fails. The rows go to *all.
bool ReadCache(const std::string& path, const CtrReadOptions& options, CtrBlock* all) {
  StatusOr<std::unique_ptr<CtrReader>> reader = CtrReader::Open(path, options);
  if (!reader.ok()) return false;
  const CtrSchema& schema = (*reader)->schema();
  if (schema.format != CtrFormat::kCache) {
    TS_FUZZ_CHECK(options.format == CtrFormat::kAuto);  // text, detected as such
    return true;
  }
  TS_FUZZ_CHECK(schema.num_rows >= 0);
  if (schema.multi_hot) all->offsets.push_back(0);
  CtrBlock block;
  int64_t rows = 0;
  for (;;) {
    StatusOr<bool> more = (*reader)->Next(&block);
    if (!more.ok()) return false;
    if (!*more) break;
    CheckShape(schema, block);
    rows += static_cast<int64_t>(block.size());
    worker::AppendCtrBlock(block, schema.multi_hot, all);
  }
  TS_FUZZ_CHECK(rows <= schema.num_rows);
  TS_FUZZ_CHECK((*reader)->Seek((*reader)->position()).ok());
  return true;
}

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace
}  // namespace tessera::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::worker;
  namespace fuzz = tessera::fuzz;
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const uint8_t opts = data[1];
  CtrReadOptions read;
  read.num_threads = 1 + (opts & 1);
  read.chunk_bytes = 1 + (opts >> 1) * 64;
  read.format = (opts & 0x80) ? CtrFormat::kAuto : CtrFormat::kCache;

  if ((mode & 1) == 0) {
    const uint8_t* file = data + 2;
    const size_t file_size = size - 2;
    if (file_size >= 48) {
      read.bucketize_integers = file[36] != 0;
      read.hash_seed = fuzz::Load64(file + 40);
    }
    CtrBlock rows;
    fuzz::ReadCache(fuzz::InputFile(file, file_size), read, &rows);
    return 0;
  }

  const int num_xors = (mode >> 1) & 7;
  const size_t text_at = 2 + 5 * static_cast<size_t>(num_xors);
  if (size < text_at) return 0;
  CtrReadOptions text;
  text.format = CtrFormat::kAuto;
  text.num_threads = 1;
  text.skip_bad_lines = (mode & 0x10) != 0;
  text.bucketize_integers = (mode & 0x20) != 0;
  text.hash_seed = mode >> 6;
  read.hash_seed = text.hash_seed;
  read.bucketize_integers = text.bucketize_integers;
  const std::string text_path = fuzz::InputFile(data + text_at, size - text_at);
  const std::string cache_path = fuzz::ScratchDir() + "/fuzz.cache";
  unlink(cache_path.c_str());
  if (!WriteCtrCache(text_path, text, cache_path).ok()) return 0;

  if (num_xors > 0) {
    std::string bytes = fuzz::ReadFile(cache_path);
    TS_FUZZ_CHECK(!bytes.empty());
    for (int i = 0; i < num_xors; ++i) {
      const uint8_t* x = data + 2 + 5 * i;
      uint32_t offset;
      std::memcpy(&offset, x, 4);
      bytes[offset % bytes.size()] ^= static_cast<char>(x[4]);
    }
    fuzz::WriteFile(cache_path, bytes.data(), bytes.size());
    CtrBlock rows;
    fuzz::ReadCache(cache_path, read, &rows);
    return 0;
  }
  // An untouched cache reads back exactly the text's rows.
  tessera::StatusOr<CtrBlock> expected = CtrReader::ReadAll(text_path, text, nullptr);
  TS_FUZZ_CHECK(expected.ok());
  CtrBlock rows;
  TS_FUZZ_CHECK(fuzz::ReadCache(cache_path, read, &rows));
  TS_FUZZ_CHECK(rows.labels == expected->labels && rows.dense == expected->dense &&
                rows.keys == expected->keys && rows.values == expected->values &&
                rows.offsets == expected->offsets);
  return 0;
}

#include "worker/data/ctr_cache.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/logging.h"
#include "core/safe_output.h"
#include "worker/data/internal/text_chunks.h"

namespace tessera::worker {
namespace {

// Records are copied from memory as they are, so the host must be little-endian as the file is
// (every platform we build for is).
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the CTR cache assumes little-endian");

// Records are written in batches of about this many bytes.
constexpr size_t kWriteBufferBytes = 4 << 20;

// Writes all of [p, p + n) at the file position of fd.
Status WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return internal::ErrnoStatus("cannot write", path, errno);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return OkStatus();
}

// The cache file being written: removed again unless Commit succeeds.
class CacheFile {
 public:
  CacheFile(std::string tmp_path, std::string path)
      : tmp_path_(std::move(tmp_path)), path_(std::move(path)) {}
  ~CacheFile() {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(tmp_path_.c_str());
  }
  CacheFile(const CacheFile&) = delete;
  CacheFile& operator=(const CacheFile&) = delete;

  Status Create() {
    fd_ = open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return internal::ErrnoStatus("cannot create", tmp_path_, errno);
    return OkStatus();
  }
  Status Write(const char* p, size_t n) { return WriteAll(fd_, p, n, tmp_path_); }
  // Writes the final header over the placeholder, syncs, and renames the file into place.
  Status Commit(const char* header) {
    TS_CHECK_GE(fd_, 0);
    if (pwrite(fd_, header, kCtrCacheHeaderBytes, 0) !=
        static_cast<ssize_t>(kCtrCacheHeaderBytes)) {
      return internal::ErrnoStatus("cannot write the header of", tmp_path_, errno);
    }
    if (fsync(fd_) != 0) return internal::ErrnoStatus("cannot sync", tmp_path_, errno);
    int rc = close(fd_);
    fd_ = -1;
    if (rc != 0) return internal::ErrnoStatus("cannot close", tmp_path_, errno);
    if (rename(tmp_path_.c_str(), path_.c_str()) != 0) {
      return internal::ErrnoStatus("cannot rename " + tmp_path_ + " to", path_, errno);
    }
    committed_ = true;
    const std::string dir = std::filesystem::path(path_).parent_path().string();
    const int dir_fd = open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      (void)fsync(dir_fd);
      close(dir_fd);
    }
    return OkStatus();
  }

 private:
  std::string tmp_path_;
  std::string path_;
  int fd_ = -1;
  bool committed_ = false;
};

// The CRC-32s of the blocks of records as they are appended.
class BlockChecksums {
 public:
  BlockChecksums(uint64_t record_bytes, uint32_t block_records)
      : record_bytes_(record_bytes), block_records_(block_records) {}
  // `n` records at `p`.
  void Add(const char* p, uint64_t n) {
    while (n > 0) {
      const uint64_t take = std::min<uint64_t>(n, block_records_ - in_block_);
      crc_ = crc32_z(crc_, reinterpret_cast<const Bytef*>(p), take * record_bytes_);
      p += take * record_bytes_;
      n -= take;
      in_block_ += take;
      if (in_block_ == block_records_) Close();
    }
  }
  // The table's bytes (little-endian u32 each), the last partial block included.
  std::string Table() {
    if (in_block_ > 0) Close();
    std::string bytes(4 * crcs_.size(), '\0');
    for (size_t i = 0; i < crcs_.size(); ++i) std::memcpy(&bytes[4 * i], &crcs_[i], 4);
    return bytes;
  }

 private:
  void Close() {
    crcs_.push_back(static_cast<uint32_t>(crc_));
    crc_ = 0;
    in_block_ = 0;
  }
  const uint64_t record_bytes_;
  const uint32_t block_records_;
  uLong crc_ = 0;
  uint64_t in_block_ = 0;
  std::vector<uint32_t> crcs_;
};

}  // namespace

Status WriteCtrCache(const std::string& input, const CtrReadOptions& read,
                     const std::string& output) {
  TS_RETURN_IF_ERROR(safe_output::CheckOutputFile(output, "--output", {{"--input", input}}));
  TS_ASSIGN_OR_RETURN(std::unique_ptr<CtrReader> reader, CtrReader::Open(input, read));
  const CtrSchema& schema = reader->schema();
  if (schema.format == CtrFormat::kCache) {
    return Status::InvalidArgument(input + " is a cache already");
  }
  if (schema.multi_hot && schema.max_keys > kCtrCacheMaxKeys) {
    return Status::InvalidArgument(
        input + " has varying feature counts, up to " + std::to_string(schema.max_keys) +
        " on a line: the cache pads every row to the longest line and takes at most " +
        std::to_string(kCtrCacheMaxKeys) + " features per line; read the text instead");
  }
  CtrCacheHeader header;
  header.source_format = schema.format;
  header.num_dense = static_cast<uint32_t>(schema.num_dense);
  header.num_fields = static_cast<uint32_t>(schema.num_fields);
  header.multi_hot = schema.multi_hot;
  header.keys_per_record =
      static_cast<uint32_t>(schema.multi_hot ? schema.max_keys : schema.num_fields);
  header.bucketize_integers = schema.bucketize_integers;
  header.hash_seed = schema.hash_seed;
  header.block_records = CtrCacheBlockRecords(header.RecordBytes());
  BlockChecksums checksums(header.RecordBytes(), header.block_records);

  CacheFile file(safe_output::TemporaryPathFor(output), output);
  TS_RETURN_IF_ERROR(file.Create());
  std::vector<char> bytes(kCtrCacheHeaderBytes, 0);  // a placeholder until the count is known
  TS_RETURN_IF_ERROR(file.Write(bytes.data(), bytes.size()));

  const size_t num_dense = header.num_dense;
  const size_t num_keys = header.keys_per_record;
  const size_t record_bytes = header.RecordBytes();
  const size_t keys_offset = 4 + 4 * num_dense;
  const size_t values_offset = keys_offset + 8 * num_keys;
  CtrBlock block;
  for (;;) {
    TS_ASSIGN_OR_RETURN(bool more, reader->Next(&block));
    if (!more) break;
    for (size_t first = 0; first < block.size();) {
      const size_t rows =
          std::min(block.size() - first, std::max<size_t>(1, kWriteBufferBytes / record_bytes));
      bytes.resize(rows * record_bytes);
      for (size_t i = 0; i < rows; ++i) {
        const size_t r = first + i;
        char* rec = bytes.data() + i * record_bytes;
        std::memcpy(rec, &block.labels[r], 4);
        if (num_dense > 0) {
          std::memcpy(rec + 4, block.dense.data() + r * num_dense, 4 * num_dense);
        }
        size_t key_begin = r * num_keys;
        size_t count = num_keys;
        if (schema.multi_hot) {
          key_begin = block.offsets[r];
          count = block.offsets[r + 1] - key_begin;
          TS_CHECK_LE(count, num_keys) << "a row has more keys than the scan counted";
          for (size_t j = count; j < num_keys; ++j) {
            std::memcpy(rec + keys_offset + 8 * j, &kCtrCachePadKey, 8);
            std::memset(rec + values_offset + 4 * j, 0, 4);
          }
        }
        if (count > 0) {
          std::memcpy(rec + keys_offset, block.keys.data() + key_begin, 8 * count);
          std::memcpy(rec + values_offset, block.values.data() + key_begin, 4 * count);
        }
      }
      for (size_t i = 0; i < rows; ++i) {
        const std::string why = CheckCtrCacheRecord(header, bytes.data() + i * record_bytes);
        if (!why.empty()) {
          return Status::InvalidArgument(input + ": row " + std::to_string(header.num_records + i) +
                                         " (from 0): " + why + "; not written to a cache");
        }
      }
      checksums.Add(bytes.data(), rows);
      TS_RETURN_IF_ERROR(file.Write(bytes.data(), bytes.size()));
      header.num_records += rows;
      first += rows;
    }
  }
  if (reader->bad_lines() > 0) {
    TS_LOG(WARNING) << "skipped " << reader->bad_lines() << " bad lines in " << input
                    << "; the first: " << reader->first_bad_line();
  }
  const std::string table = checksums.Table();
  TS_CHECK_EQ(table.size(), 4 * header.NumBlocks());
  TS_RETURN_IF_ERROR(file.Write(table.data(), table.size()));
  header.table_crc =
      static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(table.data()), table.size()));
  char encoded[kCtrCacheHeaderBytes];
  EncodeCtrCacheHeader(header, encoded);
  TS_RETURN_IF_ERROR(file.Commit(encoded));
  TS_LOG(INFO) << "wrote " << header.num_records << " rows of " << input << " ("
               << schema.Describe() << ") to " << output;
  return OkStatus();
}

}  // namespace tessera::worker

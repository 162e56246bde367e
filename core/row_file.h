// Row files: the rows of one table that one server shard thread holds, as a checkpoint file
// (proto/checkpoint.proto documents the layout; core/checkpoint.h the directory protocol). The
// only code that writes or reads their bytes: servers write and load them, `tessera export`
// reads them, tests and benchmarks use the same classes.
//
//   a 64-byte RowFileHeader, then num_rows records of
//   key (uint64) | dim weights (float32) | state_floats optimizer floats (float32)
//
// all little-endian. The header must agree with the file's manifest entry (table, slot range,
// rows, size), so a file that was moved or mixed up is refused.
//
// Threads: single-owner objects. Files are reached through the Env given to Create / Open.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/checkpoint.h"

namespace tessera::checkpoint {

// The fixed 64-byte header of a row file (little-endian, as the rows after it).
struct RowFileHeader {
  char magic[8] = {'T', 'S', 'R', 'O', 'W', 'S', '0', '1'};
  uint32_t version = kRowFileVersion;
  uint32_t table_id = 0;
  uint32_t dim = 0;           // weights per row
  uint32_t state_floats = 0;  // optimizer state floats after the weights
  uint32_t slot_begin = 0;    // the writing server's slot range
  uint32_t slot_end = 0;
  uint64_t num_rows = 0;
  uint8_t reserved[24] = {};
};
static_assert(sizeof(RowFileHeader) == 64, "the row file header is 64 bytes on disk");

// Checks a row file's header against its manifest entry (and `name` for messages).
Status CheckRowFileHeader(const RowFileHeader& header, const proto::CheckpointFile& entry,
                          const std::string& name);

// "server-R-shard-S-table-T.rows": the file of server R's shard thread S for table T.
std::string RowFileName(int server_rank, int shard, uint32_t table_id);

class RowFileWriter {
 public:
  // Creates `path` for `header.num_rows` rows of table `header.table_id` (`header` gives the
  // shape and slot range; magic and version are this build's).
  static StatusOr<std::unique_ptr<RowFileWriter>> Create(Env* env, const std::string& path,
                                                         const RowFileHeader& header);
  // Appends one row: `row` holds dim weights then state_floats optimizer floats.
  Status Append(uint64_t key, const float* row);
  // DataLoss unless exactly num_rows rows were appended; fsyncs the file and returns its
  // manifest entry (KIND_ROWS, table, rows, slot range, size, CRC-32).
  StatusOr<proto::CheckpointFile> Finish();

 private:
  RowFileWriter(std::unique_ptr<FileWriter> file, const RowFileHeader& header, std::string path);

  std::unique_ptr<FileWriter> file_;
  const RowFileHeader header_;
  const std::string path_;
  std::vector<char> record_;
  uint64_t rows_ = 0;
};

class RowFileReader {
 public:
  // Opens the row file of a manifest entry and checks its header against the entry.
  static StatusOr<std::unique_ptr<RowFileReader>> Open(Env* env, const std::string& dir,
                                                       const proto::CheckpointFile& entry);
  const RowFileHeader& header() const { return header_; }
  const std::string& path() const { return file_->path(); }
  // Reads the next row: *key and dim + state_floats floats into `row`. REQUIRES: fewer than
  // header().num_rows rows read.
  Status Next(uint64_t* key, float* row);
  // DataLoss unless every row was read and the file's CRC-32 matches the manifest's.
  Status Finish();

 private:
  RowFileReader(std::unique_ptr<FileReader> file, const RowFileHeader& header);

  std::unique_ptr<FileReader> file_;
  const RowFileHeader header_;
};

}  // namespace tessera::checkpoint

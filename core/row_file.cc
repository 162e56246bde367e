#include "core/row_file.h"

#include <cstdint>
#include <cstring>

namespace tessera::checkpoint {

Status CheckRowFileHeader(const RowFileHeader& h, const proto::CheckpointFile& entry,
                          const std::string& name) {
  const RowFileHeader expected;
  if (std::memcmp(h.magic, expected.magic, sizeof(h.magic)) != 0) {
    return Status::DataLoss(name + " is not a Tessera row file");
  }
  if (h.version != static_cast<uint32_t>(kRowFileVersion)) {
    return Status::DataLoss(name + " has row format version " + std::to_string(h.version) +
                            ", this build reads " + std::to_string(kRowFileVersion));
  }
  // Rows are read into buffers of int-sized widths: a wider row is no row of ours (and its width
  // would wrap around in 32 bits).
  if (uint64_t{h.dim} + h.state_floats > INT32_MAX) {
    return Status::DataLoss(name + " has rows of " + std::to_string(h.dim) + " weights + " +
                            std::to_string(h.state_floats) + " optimizer floats");
  }
  const uint64_t row_bytes = sizeof(uint64_t) + sizeof(float) * (uint64_t{h.dim} + h.state_floats);
  // The row count is bounded by the size first, so the product below cannot wrap around 2^64 to
  // the file's size (fuzz/corpus/fuzz_row_file/rows_times_size_wraps).
  if (entry.size_bytes() < sizeof(RowFileHeader) ||
      h.num_rows > (entry.size_bytes() - sizeof(RowFileHeader)) / row_bytes ||
      h.table_id != entry.table_id() || h.num_rows != entry.num_rows() ||
      h.slot_begin != entry.slot_begin() || h.slot_end != entry.slot_end() ||
      h.slot_begin > h.slot_end ||
      sizeof(RowFileHeader) + h.num_rows * row_bytes != entry.size_bytes()) {
    return Status::DataLoss(name + ": its header does not match the manifest entry");
  }
  return OkStatus();
}

std::string RowFileName(int server_rank, int shard, uint32_t table_id) {
  return "server-" + std::to_string(server_rank) + "-shard-" + std::to_string(shard) + "-table-" +
         std::to_string(table_id) + ".rows";
}

// ---- RowFileWriter ----

RowFileWriter::RowFileWriter(std::unique_ptr<FileWriter> file, const RowFileHeader& header,
                             std::string path)
    : file_(std::move(file)), header_(header), path_(std::move(path)) {
  record_.resize(sizeof(uint64_t) + sizeof(float) * (uint64_t{header.dim} + header.state_floats));
}

StatusOr<std::unique_ptr<RowFileWriter>> RowFileWriter::Create(Env* env, const std::string& path,
                                                               const RowFileHeader& shape) {
  RowFileHeader header;  // this build's magic, version and reserved bytes
  header.table_id = shape.table_id;
  header.dim = shape.dim;
  header.state_floats = shape.state_floats;
  header.slot_begin = shape.slot_begin;
  header.slot_end = shape.slot_end;
  header.num_rows = shape.num_rows;
  TS_ASSIGN_OR_RETURN(auto file, FileWriter::Create(env, path));
  TS_RETURN_IF_ERROR(file->Append(&header, sizeof(header)));
  return std::unique_ptr<RowFileWriter>(new RowFileWriter(std::move(file), header, path));
}

Status RowFileWriter::Append(uint64_t key, const float* row) {
  if (rows_ == header_.num_rows) {
    return Status::Internal(path_ + ": more than the " + std::to_string(header_.num_rows) +
                            " rows its header announces");
  }
  std::memcpy(record_.data(), &key, sizeof(key));
  std::memcpy(record_.data() + sizeof(key), row, record_.size() - sizeof(key));
  ++rows_;
  return file_->Append(record_.data(), record_.size());
}

StatusOr<proto::CheckpointFile> RowFileWriter::Finish() {
  if (rows_ != header_.num_rows) {
    return Status::Internal(path_ + ": " + std::to_string(rows_) + " rows written, its header " +
                            "announces " + std::to_string(header_.num_rows));
  }
  TS_ASSIGN_OR_RETURN(proto::CheckpointFile entry, file_->Finish());
  entry.set_kind(proto::CheckpointFile::KIND_ROWS);
  entry.set_table_id(header_.table_id);
  entry.set_num_rows(header_.num_rows);
  entry.set_slot_begin(header_.slot_begin);
  entry.set_slot_end(header_.slot_end);
  return entry;
}

// ---- RowFileReader ----

RowFileReader::RowFileReader(std::unique_ptr<FileReader> file, const RowFileHeader& header)
    : file_(std::move(file)), header_(header) {}

StatusOr<std::unique_ptr<RowFileReader>> RowFileReader::Open(Env* env, const std::string& dir,
                                                             const proto::CheckpointFile& entry) {
  TS_ASSIGN_OR_RETURN(auto file, FileReader::Open(env, dir, entry));
  RowFileHeader header;
  TS_RETURN_IF_ERROR(file->Read(&header, sizeof(header)));
  TS_RETURN_IF_ERROR(CheckRowFileHeader(header, entry, file->path()));
  return std::unique_ptr<RowFileReader>(new RowFileReader(std::move(file), header));
}

Status RowFileReader::Next(uint64_t* key, float* row) {
  TS_RETURN_IF_ERROR(file_->Read(key, sizeof(*key)));
  return file_->Read(row, sizeof(float) * (uint64_t{header_.dim} + header_.state_floats));
}

Status RowFileReader::Finish() { return file_->Finish(); }

}  // namespace tessera::checkpoint

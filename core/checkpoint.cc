#include "core/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tessera::checkpoint {
namespace {

constexpr size_t kBufferBytes = 4 << 20;

std::string Errno(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

std::string Join(const std::string& dir, const std::string& name) { return dir + "/" + name; }

bool HasManifest(const std::string& dir) {
  struct stat st;
  return stat(Join(dir, kManifestName).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Writes `text` to `path` durably: a temporary name, fsync, rename over `path`, fsync the dir.
Status WriteSmallFileAtomically(const std::string& dir, const std::string& name,
                                const std::string& text) {
  const std::string tmp = Join(dir, name + ".writing");
  TS_ASSIGN_OR_RETURN(auto writer, FileWriter::Create(tmp));
  TS_RETURN_IF_ERROR(writer->Append(text.data(), text.size()));
  TS_RETURN_IF_ERROR(writer->Finish().status());
  if (std::rename(tmp.c_str(), Join(dir, name).c_str()) != 0) {
    return Status::Unavailable(Errno("cannot rename to", Join(dir, name)));
  }
  return SyncDir(dir);
}

// Complete checkpoints under root, by step.
std::vector<std::pair<int64_t, std::string>> CompleteCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  DIR* d = opendir(root.c_str());
  if (d == nullptr) return found;
  while (dirent* e = readdir(d)) {
    const int64_t step = ParseStepDirName(e->d_name);
    if (step >= 0 && HasManifest(Join(root, e->d_name))) {
      found.emplace_back(step, Join(root, e->d_name));
    }
  }
  closedir(d);
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

std::string StepDirName(int64_t step) { return "step-" + std::to_string(step); }
std::string TmpDirName(int64_t step) { return StepDirName(step) + ".tmp"; }

int64_t ParseStepDirName(const std::string& name) {
  if (name.size() <= 5 || name.compare(0, 5, "step-") != 0) return -1;
  int64_t step = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

uint32_t Crc32(const void* data, size_t size, uint32_t crc) {
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = static_cast<uint32_t>(crc32(crc, p, chunk));
    p += chunk;
    size -= chunk;
  }
  return crc;
}

// ---- FileWriter ----

FileWriter::FileWriter(int fd, std::string path)
    : fd_(fd), path_(std::move(path)), buffer_(kBufferBytes) {}

FileWriter::~FileWriter() {
  if (fd_ >= 0) close(fd_);
}

StatusOr<std::unique_ptr<FileWriter>> FileWriter::Create(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Unavailable(Errno("cannot create", path));
  return std::unique_ptr<FileWriter>(new FileWriter(fd, path));
}

Status FileWriter::Flush() {
  size_t done = 0;
  while (done < used_) {
    const ssize_t n = write(fd_, buffer_.data() + done, used_ - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Unavailable(Errno("cannot write", path_));
    done += static_cast<size_t>(n);
  }
  used_ = 0;
  return OkStatus();
}

Status FileWriter::Append(const void* data, size_t size) {
  if (fd_ < 0) return Status::Internal("write to " + path_ + " after Finish");
  crc_ = Crc32(data, size, crc_);
  size_ += size;
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const size_t take = std::min(size, buffer_.size() - used_);
    std::memcpy(buffer_.data() + used_, p, take);
    used_ += take;
    p += take;
    size -= take;
    if (used_ == buffer_.size()) TS_RETURN_IF_ERROR(Flush());
  }
  return OkStatus();
}

StatusOr<proto::CheckpointFile> FileWriter::Finish() {
  TS_RETURN_IF_ERROR(Flush());
  if (fsync(fd_) != 0) return Status::Unavailable(Errno("cannot fsync", path_));
  const int fd = fd_;
  fd_ = -1;
  if (close(fd) != 0) return Status::Unavailable(Errno("cannot close", path_));
  proto::CheckpointFile entry;
  entry.set_name(std::filesystem::path(path_).filename().string());
  entry.set_size_bytes(size_);
  entry.set_crc32(crc_);
  return entry;
}

// ---- FileReader ----

FileReader::FileReader(int fd, std::string path, proto::CheckpointFile entry)
    : fd_(fd), path_(std::move(path)), entry_(std::move(entry)), buffer_(kBufferBytes) {}

FileReader::~FileReader() {
  if (fd_ >= 0) close(fd_);
}

StatusOr<std::unique_ptr<FileReader>> FileReader::Open(const std::string& dir,
                                                       const proto::CheckpointFile& entry) {
  const std::string path = Join(dir, entry.name());
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return Status::NotFound("checkpoint file " + path + " is missing (the manifest lists it)");
    }
    return Status::Unavailable(Errno("cannot open checkpoint file", path));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return Status::Unavailable(Errno("cannot stat", path));
  }
  if (static_cast<uint64_t>(st.st_size) != entry.size_bytes()) {
    close(fd);
    return Status::DataLoss("checkpoint file " + path + " is " + std::to_string(st.st_size) +
                            " bytes, the manifest says " + std::to_string(entry.size_bytes()) +
                            " (truncated or overwritten)");
  }
  return std::unique_ptr<FileReader>(new FileReader(fd, path, entry));
}

Status FileReader::Read(void* out, size_t size) {
  char* p = static_cast<char*>(out);
  while (size > 0) {
    if (begin_ == end_) {
      ssize_t n;
      do {
        n = read(fd_, buffer_.data(), buffer_.size());
      } while (n < 0 && errno == EINTR);
      if (n < 0) return Status::Unavailable(Errno("cannot read", path_));
      if (n == 0) return Status::DataLoss("checkpoint file " + path_ + " ends early");
      crc_ = Crc32(buffer_.data(), static_cast<size_t>(n), crc_);
      begin_ = 0;
      end_ = static_cast<size_t>(n);
    }
    const size_t take = std::min(size, end_ - begin_);
    std::memcpy(p, buffer_.data() + begin_, take);
    begin_ += take;
    consumed_ += take;
    p += take;
    size -= take;
  }
  return OkStatus();
}

Status FileReader::Finish() {
  if (consumed_ != entry_.size_bytes() || begin_ != end_) {
    return Status::DataLoss("checkpoint file " + path_ + " has " +
                            std::to_string(entry_.size_bytes() - consumed_) +
                            " bytes past its content");
  }
  char probe;
  if (read(fd_, &probe, 1) != 0) {
    return Status::DataLoss("checkpoint file " + path_ + " grew while being read");
  }
  if (crc_ != entry_.crc32()) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), ": CRC-32 %08x, the manifest says %08x", crc_, entry_.crc32());
    return Status::DataLoss("checksum mismatch in checkpoint file " + path_ + buf);
  }
  return OkStatus();
}

// ---- row files, protobuf files ----

Status CheckRowFileHeader(const RowFileHeader& h, const proto::CheckpointFile& entry,
                          const std::string& name) {
  const RowFileHeader expected;
  if (std::memcmp(h.magic, expected.magic, sizeof(h.magic)) != 0) {
    return Status::DataLoss(name + " is not a Tessera row file");
  }
  if (h.version != static_cast<uint32_t>(kFormatVersion)) {
    return Status::DataLoss(name + " has row format version " + std::to_string(h.version) +
                            ", this build reads " + std::to_string(kFormatVersion));
  }
  const uint64_t row_bytes = sizeof(uint64_t) + sizeof(float) * (uint64_t{h.dim} + h.state_floats);
  if (h.table_id != entry.table_id() || h.num_rows != entry.num_rows() ||
      h.slot_begin != entry.slot_begin() || h.slot_end != entry.slot_end() ||
      sizeof(RowFileHeader) + h.num_rows * row_bytes != entry.size_bytes()) {
    return Status::DataLoss(name + ": its header does not match the manifest entry");
  }
  return OkStatus();
}

StatusOr<proto::CheckpointFile> WriteProtoFile(const std::string& path,
                                               const google::protobuf::MessageLite& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return Status::Internal("cannot encode " + message.GetTypeName() + " for " + path);
  }
  TS_ASSIGN_OR_RETURN(auto writer, FileWriter::Create(path));
  TS_RETURN_IF_ERROR(writer->Append(bytes.data(), bytes.size()));
  return writer->Finish();
}

Status ReadProtoFile(const std::string& dir, const proto::CheckpointFile& entry,
                     google::protobuf::MessageLite* message) {
  TS_ASSIGN_OR_RETURN(auto reader, FileReader::Open(dir, entry));
  std::string bytes(entry.size_bytes(), '\0');
  TS_RETURN_IF_ERROR(reader->Read(bytes.data(), bytes.size()));
  TS_RETURN_IF_ERROR(reader->Finish());
  if (!message->ParseFromString(bytes)) {
    return Status::DataLoss("checkpoint file " + reader->path() + " does not parse as " +
                            message->GetTypeName());
  }
  return OkStatus();
}

// ---- manifest ----

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string json;
  // Cannot fail for a message without Any fields.
  (void)google::protobuf::util::MessageToJsonString(message, &json, options);
  return json;
}

Status FromJson(const std::string& json, const std::string& what,
                google::protobuf::Message* message) {
  auto status = google::protobuf::util::JsonStringToMessage(json, message);
  if (!status.ok()) return Status::DataLoss(what + " does not parse: " + status.ToString());
  return OkStatus();
}

Status WriteManifest(const std::string& dir, const proto::CheckpointManifest& manifest) {
  return WriteSmallFileAtomically(dir, kManifestName, ToJson(manifest));
}

StatusOr<proto::CheckpointManifest> ReadManifest(const std::string& dir) {
  const std::string path = Join(dir, kManifestName);
  std::ifstream in(path);
  if (!in) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return Status::NotFound("no checkpoint at " + dir);
    return Status::NotFound(dir + " is not a complete checkpoint: it has no " + kManifestName);
  }
  std::stringstream text;
  text << in.rdbuf();
  proto::CheckpointManifest manifest;
  TS_RETURN_IF_ERROR(FromJson(text.str(), "manifest " + path, &manifest));
  if (manifest.format_version() != kFormatVersion) {
    return Status::DataLoss("manifest " + path + " has format version " +
                            std::to_string(manifest.format_version()) + ", this build reads " +
                            std::to_string(kFormatVersion));
  }
  return manifest;
}

const proto::CheckpointFile* FindFile(const proto::CheckpointManifest& manifest,
                                      const std::string& name) {
  for (const auto& f : manifest.files()) {
    if (f.name() == name) return &f;
  }
  return nullptr;
}

Status VerifyFiles(const std::string& dir, const proto::CheckpointManifest& manifest,
                   bool checksums) {
  std::vector<char> buffer(kBufferBytes);
  for (const auto& entry : manifest.files()) {
    TS_ASSIGN_OR_RETURN(auto reader, FileReader::Open(dir, entry));
    if (!checksums) continue;
    for (uint64_t left = entry.size_bytes(); left > 0;) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(left, buffer.size()));
      TS_RETURN_IF_ERROR(reader->Read(buffer.data(), take));
      left -= take;
    }
    TS_RETURN_IF_ERROR(reader->Finish());
  }
  return OkStatus();
}

std::string ResumeHint(const std::string& last_checkpoint, const std::string& root) {
  if (last_checkpoint.empty()) {
    return std::string("no checkpoint was completed") +
           (root.empty() ? " (no --checkpoint-dir)" : "") + ": a new run starts from scratch";
  }
  return "last complete checkpoint " + last_checkpoint + ": continue with --resume " +
         last_checkpoint +
         (root.empty() ? std::string() : " (or --resume auto --checkpoint-dir " + root + ")");
}

// ---- the directory protocol ----

Status MakeDirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::Unavailable("cannot create directory " + dir + ": " + ec.message());
  return OkStatus();
}

Status SyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Unavailable(Errno("cannot open directory", dir));
  const int rc = fsync(fd);
  close(fd);
  if (rc != 0) return Status::Unavailable(Errno("cannot fsync directory", dir));
  return OkStatus();
}

Status Commit(const std::string& root, int64_t step) {
  const std::string tmp = Join(root, TmpDirName(step));
  const std::string final_dir = Join(root, StepDirName(step));
  if (!HasManifest(tmp)) return Status::Internal(tmp + " has no manifest; not committing it");
  std::error_code ec;
  if (std::filesystem::exists(final_dir, ec)) {
    // A checkpoint of the same step (an earlier attempt of this run's step after a resume):
    // the new one replaces it only once it is complete.
    std::filesystem::remove_all(final_dir, ec);
    if (ec) return Status::Unavailable("cannot replace " + final_dir + ": " + ec.message());
  }
  if (std::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    return Status::Unavailable(Errno("cannot rename " + tmp + " to", final_dir));
  }
  TS_RETURN_IF_ERROR(SyncDir(root));
  return WriteSmallFileAtomically(root, kLatestName, StepDirName(step) + "\n");
}

Status Prune(const std::string& root, int keep, int64_t committed) {
  if (keep <= 0) return OkStatus();
  auto complete = CompleteCheckpoints(root);
  complete.erase(std::remove_if(complete.begin(), complete.end(),
                                [&](const auto& c) { return c.first > committed; }),
                 complete.end());
  if (static_cast<int>(complete.size()) <= keep) return OkStatus();
  for (size_t i = 0; i + keep < complete.size(); ++i) {
    std::error_code ec;
    std::filesystem::remove_all(complete[i].second, ec);
    if (ec) return Status::Unavailable("cannot delete " + complete[i].second + ": " + ec.message());
  }
  return SyncDir(root);
}

void RemoveIncomplete(const std::string& root) {
  DIR* d = opendir(root.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0 &&
        ParseStepDirName(name.substr(0, name.size() - 4)) >= 0) {
      stale.push_back(name);
    }
  }
  closedir(d);
  for (const auto& name : stale) {
    const std::string tmp = Join(root, name);
    const std::string final_dir = Join(root, name.substr(0, name.size() - 4));
    std::error_code ec;
    if (HasManifest(tmp) && !std::filesystem::exists(final_dir, ec) &&
        std::rename(tmp.c_str(), final_dir.c_str()) == 0) {
      continue;
    }
    std::filesystem::remove_all(tmp, ec);
  }
}

std::string FindLatest(const std::string& root) {
  std::ifstream in(Join(root, kLatestName));
  std::string name;
  if (in >> name && ParseStepDirName(name) >= 0 && HasManifest(Join(root, name))) {
    return Join(root, name);
  }
  auto complete = CompleteCheckpoints(root);
  return complete.empty() ? "" : complete.back().second;
}

StatusOr<std::string> ResolveResume(const std::string& resume, const std::string& root) {
  if (resume == "auto") {
    if (root.empty()) return Status::InvalidArgument("--resume auto needs --checkpoint-dir");
    return FindLatest(root);
  }
  if (HasManifest(resume)) return resume;
  struct stat st;
  if (stat(Join(resume, kLatestName).c_str(), &st) == 0) {
    const std::string latest = FindLatest(resume);
    if (!latest.empty()) return latest;
  }
  if (stat(resume.c_str(), &st) != 0)
    return Status::NotFound("--resume " + resume + ": no such checkpoint");
  return Status::NotFound("--resume " + resume + " is not a complete checkpoint (no " +
                          kManifestName + ")");
}

}  // namespace tessera::checkpoint

#include "core/checkpoint.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/json_util.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/checkpoint_check.h"

namespace tessera::checkpoint {
namespace {

constexpr size_t kBufferBytes = 4 << 20;

std::string Join(const std::string& dir, const std::string& name) { return dir + "/" + name; }

bool HasManifest(Env* env, const std::string& dir) {
  return env->FileExists(Join(dir, kManifestName));
}

// Writes `text` to `path` durably: a temporary name, fsync, rename over `path`, fsync the dir.
Status WriteSmallFileAtomically(Env* env, const std::string& dir, const std::string& name,
                                const std::string& text) {
  const std::string tmp = Join(dir, name + ".writing");
  TS_ASSIGN_OR_RETURN(auto writer, FileWriter::Create(env, tmp));
  TS_RETURN_IF_ERROR(writer->Append(text.data(), text.size()));
  TS_RETURN_IF_ERROR(writer->Finish().status());
  TS_RETURN_IF_ERROR(env->RenameFile(tmp, Join(dir, name)));
  return env->SyncDir(dir);
}

// Complete checkpoints under root, by step.
std::vector<std::pair<int64_t, std::string>> CompleteCheckpoints(Env* env,
                                                                 const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> found;
  auto names = env->GetChildren(root);
  if (!names.ok()) return found;
  for (const std::string& name : *names) {
    const int64_t step = ParseStepDirName(name);
    if (step >= 0 && HasManifest(env, Join(root, name))) {
      found.emplace_back(step, Join(root, name));
    }
  }
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

FileWriter::FileWriter(std::unique_ptr<WritableFile> file, std::string path)
    : file_(std::move(file)), path_(std::move(path)), buffer_(kBufferBytes) {}

FileWriter::~FileWriter() = default;

StatusOr<std::unique_ptr<FileWriter>> FileWriter::Create(Env* env, const std::string& path) {
  TS_ASSIGN_OR_RETURN(auto file, env->NewWritableFile(path));
  return std::unique_ptr<FileWriter>(new FileWriter(std::move(file), path));
}

Status FileWriter::Flush() {
  if (used_ > 0) TS_RETURN_IF_ERROR(file_->Append(buffer_.data(), used_));
  used_ = 0;
  return OkStatus();
}

Status FileWriter::Append(const void* data, size_t size) {
  if (file_ == nullptr) return Status::Internal("write to " + path_ + " after Finish");
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
  if (file_ == nullptr) return Status::Internal("Finish of " + path_ + " twice");
  TS_RETURN_IF_ERROR(Flush());
  TS_RETURN_IF_ERROR(file_->Sync());
  const std::unique_ptr<WritableFile> file = std::move(file_);
  TS_RETURN_IF_ERROR(file->Close());
  proto::CheckpointFile entry;
  entry.set_name(std::filesystem::path(path_).filename().string());
  entry.set_size_bytes(size_);
  entry.set_crc32(crc_);
  return entry;
}

// ---- FileReader ----

FileReader::FileReader(std::unique_ptr<SequentialFile> file, std::string path,
                       proto::CheckpointFile entry)
    : file_(std::move(file)),
      path_(std::move(path)),
      entry_(std::move(entry)),
      // No more than the file needs (+1 to see its end in one read): a 4 MiB buffer for a small
      // file cost more than reading it (a server opens one reader per row file).
      buffer_(entry_.size_bytes() < kBufferBytes ? static_cast<size_t>(entry_.size_bytes()) + 1
                                                 : kBufferBytes) {}

FileReader::~FileReader() = default;

StatusOr<std::unique_ptr<FileReader>> FileReader::Open(Env* env, const std::string& dir,
                                                       const proto::CheckpointFile& entry) {
  const std::string path = Join(dir, entry.name());
  auto file = env->NewSequentialFile(path);
  if (!file.ok()) {
    if (file.status().code() == StatusCode::kNotFound) {
      return Status::NotFound("checkpoint file " + path + " is missing (the manifest lists it)");
    }
    return file.status().WithContext("checkpoint file");
  }
  TS_ASSIGN_OR_RETURN(const uint64_t size, env->GetFileSize(path));
  if (size != entry.size_bytes()) {
    return Status::DataLoss("checkpoint file " + path + " is " + std::to_string(size) +
                            " bytes, the manifest says " + std::to_string(entry.size_bytes()) +
                            " (truncated or overwritten)");
  }
  return std::unique_ptr<FileReader>(new FileReader(std::move(*file), path, entry));
}

Status FileReader::Read(void* out, size_t size) {
  char* p = static_cast<char*>(out);
  while (size > 0) {
    if (begin_ == end_) {
      TS_ASSIGN_OR_RETURN(const size_t n, file_->Read(buffer_.data(), buffer_.size()));
      if (n == 0) return Status::DataLoss("checkpoint file " + path_ + " ends early");
      crc_ = Crc32(buffer_.data(), n, crc_);
      begin_ = 0;
      end_ = n;
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
  TS_ASSIGN_OR_RETURN(const size_t more, file_->Read(&probe, 1));
  if (more != 0) {
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

StatusOr<proto::CheckpointFile> WriteProtoFile(Env* env, const std::string& path,
                                               const google::protobuf::MessageLite& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) {
    return Status::Internal("cannot encode " + message.GetTypeName() + " for " + path);
  }
  TS_ASSIGN_OR_RETURN(auto writer, FileWriter::Create(env, path));
  TS_RETURN_IF_ERROR(writer->Append(bytes.data(), bytes.size()));
  return writer->Finish();
}

Status ReadProtoFile(Env* env, const std::string& dir, const proto::CheckpointFile& entry,
                     google::protobuf::MessageLite* message) {
  TS_ASSIGN_OR_RETURN(auto reader, FileReader::Open(env, dir, entry));
  std::string bytes(entry.size_bytes(), '\0');
  TS_RETURN_IF_ERROR(reader->Read(bytes.data(), bytes.size()));
  TS_RETURN_IF_ERROR(reader->Finish());
  if (!message->ParseFromString(bytes)) {
    return Status::DataLoss("checkpoint file " + reader->path() + " does not parse as " +
                            message->GetTypeName());
  }
  return OkStatus();
}

std::string WorkerPositionFileName(int rank) { return "worker-" + std::to_string(rank) + ".state"; }

StatusOr<proto::CheckpointFile> WriteWorkerPosition(Env* env, const std::string& dir, int rank,
                                                    const proto::WorkerCheckpoint& position) {
  TS_ASSIGN_OR_RETURN(proto::CheckpointFile entry,
                      WriteProtoFile(env, Join(dir, WorkerPositionFileName(rank)), position));
  entry.set_kind(proto::CheckpointFile::KIND_WORKER);
  return entry;
}

StatusOr<proto::WorkerCheckpoint> ReadWorkerPosition(Env* env, const std::string& dir,
                                                     const proto::CheckpointManifest& manifest,
                                                     int rank) {
  const proto::CheckpointFile* entry = FindFile(manifest, WorkerPositionFileName(rank));
  if (entry == nullptr) {
    return Status::InvalidArgument("checkpoint " + dir + " has no " + WorkerPositionFileName(rank) +
                                   " (written by " + std::to_string(manifest.num_workers()) +
                                   " workers; resuming needs the same number)");
  }
  proto::WorkerCheckpoint position;
  TS_RETURN_IF_ERROR(ReadProtoFile(env, dir, *entry, &position));
  return position;
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

uint32_t ManifestChecksum(const proto::CheckpointManifest& manifest) {
  proto::CheckpointManifest canonical = manifest;
  canonical.set_checksum(0);
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    canonical.SerializeToCodedStream(&coded);
  }
  return Crc32(bytes.data(), bytes.size());
}

Status WriteManifest(Env* env, const std::string& dir, const proto::CheckpointManifest& manifest) {
  proto::CheckpointManifest sealed = manifest;
  sealed.set_checksum(ManifestChecksum(manifest));
  return WriteSmallFileAtomically(env, dir, kManifestName, ToJson(sealed));
}

StatusOr<proto::CheckpointManifest> ReadManifest(Env* env, const std::string& dir) {
  const std::string path = Join(dir, kManifestName);
  std::string text;
  Status read = env->ReadFileToString(path, &text);
  if (!read.ok()) {
    if (!env->FileExists(dir)) return Status::NotFound("no checkpoint at " + dir);
    if (read.code() == StatusCode::kNotFound) {
      return Status::NotFound(dir + " is not a complete checkpoint: it has no " + kManifestName);
    }
    return read.WithContext("manifest");
  }
  proto::CheckpointManifest manifest;
  TS_RETURN_IF_ERROR(FromJson(text, "manifest " + path, &manifest));
  if (manifest.format_version() != kFormatVersion) {
    return Status::DataLoss(
        "manifest " + path + " has format version " + std::to_string(manifest.format_version()) +
        ", this build reads " + std::to_string(kFormatVersion) +
        (manifest.format_version() < kFormatVersion
             ? " (written by an older Tessera, without a checksum: train it again)"
             : ""));
  }
  const uint32_t computed = ManifestChecksum(manifest);
  if (computed != manifest.checksum()) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), " (its checksum field says %08x, its content has %08x)",
                  manifest.checksum(), computed);
    // Name the edited field when the files show which one it was.
    std::string field;
    const Status files = CheckManifestAgainstFiles(env, dir, manifest);
    const std::string prefix = "manifest " + path + ": ";
    if (!files.ok() && files.message().rfind(prefix, 0) == 0) {
      field = "; " + files.message().substr(prefix.size());
    }
    return Status::DataLoss("manifest " + path +
                            " does not match its checksum: it was edited or damaged" + buf + field);
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

Status VerifyFiles(Env* env, const std::string& dir, const proto::CheckpointManifest& manifest,
                   bool checksums) {
  std::vector<char> buffer(kBufferBytes);
  for (const auto& entry : manifest.files()) {
    TS_ASSIGN_OR_RETURN(auto reader, FileReader::Open(env, dir, entry));
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

bool LooksLikeCheckpointRoot(const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const bool tmp = name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    if (name == kLatestName || name == std::string(kLatestName) + ".writing" ||
        ParseStepDirName(tmp ? name.substr(0, name.size() - 4) : name) >= 0) {
      continue;
    }
    return false;
  }
  return true;
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

Status MakeDirs(Env* env, const std::string& dir) { return env->CreateDirs(dir); }

Status SyncDir(Env* env, const std::string& dir) { return env->SyncDir(dir); }

Status Commit(Env* env, const std::string& root, int64_t step) {
  const std::string tmp = Join(root, TmpDirName(step));
  const std::string final_dir = Join(root, StepDirName(step));
  if (!HasManifest(env, tmp)) return Status::Internal(tmp + " has no manifest; not committing it");
  if (env->FileExists(final_dir)) {
    // A checkpoint of the same step (an earlier attempt of this run's step after a resume):
    // the new one replaces it only once it is complete.
    TS_RETURN_IF_ERROR(env->RemoveAll(final_dir).WithContext("cannot replace " + final_dir));
  }
  TS_RETURN_IF_ERROR(env->RenameFile(tmp, final_dir));
  TS_RETURN_IF_ERROR(env->SyncDir(root));
  return WriteSmallFileAtomically(env, root, kLatestName, StepDirName(step) + "\n");
}

Status Prune(Env* env, const std::string& root, int keep, int64_t committed) {
  if (keep <= 0) return OkStatus();
  auto complete = CompleteCheckpoints(env, root);
  complete.erase(std::remove_if(complete.begin(), complete.end(),
                                [&](const auto& c) { return c.first > committed; }),
                 complete.end());
  if (static_cast<int>(complete.size()) <= keep) return OkStatus();
  for (size_t i = 0; i + keep < complete.size(); ++i) {
    TS_RETURN_IF_ERROR(env->RemoveAll(complete[i].second));
  }
  return env->SyncDir(root);
}

void RemoveIncomplete(Env* env, const std::string& root) {
  auto names = env->GetChildren(root);
  if (!names.ok()) return;
  std::vector<std::string> stale;
  for (const std::string& name : *names) {
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0 &&
        ParseStepDirName(name.substr(0, name.size() - 4)) >= 0) {
      stale.push_back(name);
    }
  }
  std::sort(stale.begin(), stale.end());
  for (const auto& name : stale) {
    const std::string tmp = Join(root, name);
    const std::string final_dir = Join(root, name.substr(0, name.size() - 4));
    if (HasManifest(env, tmp) && !env->FileExists(final_dir) &&
        env->RenameFile(tmp, final_dir).ok()) {
      continue;
    }
    (void)env->RemoveAll(tmp);
  }
}

std::string FindLatest(Env* env, const std::string& root) {
  std::string text;
  if (env->ReadFileToString(Join(root, kLatestName), &text).ok()) {
    // The first word, as `in >> name` read it before.
    const size_t begin = text.find_first_not_of(" \t\r\n\f\v");
    if (begin != std::string::npos) {
      const size_t end = text.find_first_of(" \t\r\n\f\v", begin);
      const std::string name = text.substr(begin, end == std::string::npos ? end : end - begin);
      if (ParseStepDirName(name) >= 0 && HasManifest(env, Join(root, name))) {
        return Join(root, name);
      }
    }
  }
  auto complete = CompleteCheckpoints(env, root);
  return complete.empty() ? "" : complete.back().second;
}

StatusOr<std::string> ResolveResume(Env* env, const std::string& resume, const std::string& root,
                                    const std::string& flag) {
  if (resume == "auto") {
    if (root.empty()) return Status::InvalidArgument(flag + " auto needs --checkpoint-dir");
    return FindLatest(env, root);
  }
  if (HasManifest(env, resume)) return resume;
  if (env->FileExists(Join(resume, kLatestName))) {
    const std::string latest = FindLatest(env, resume);
    if (!latest.empty()) return latest;
  }
  if (!env->FileExists(resume)) {
    return Status::NotFound(flag + " " + resume + ": no such checkpoint");
  }
  return Status::NotFound(flag + " " + resume + " is not a complete checkpoint (no " +
                          kManifestName + ")");
}

}  // namespace tessera::checkpoint

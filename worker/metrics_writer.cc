#include "worker/metrics_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/safe_output.h"

namespace tessera::worker {

std::string JsonNumber(double value) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", value);
  return buf;
}

Status CheckFiniteMetrics(const std::string& what, const MetricValues& metrics) {
  for (const auto& [name, value] : metrics) {
    if (!std::isfinite(value)) {
      return Status::InvalidArgument(what + ": " + name + " is " + JsonNumber(value) +
                                     "; a metric is never written as null or nan");
    }
  }
  return OkStatus();
}

MetricsWriter::~MetricsWriter() {
  if (fd_ >= 0) close(fd_);
}

Status MetricsWriter::Open(const std::string& path, bool append) {
  TS_RETURN_IF_ERROR(safe_output::CheckOutputFile(path, "--metrics-out", {}));
  kept_.clear();
  if (append) {
    std::FILE* in = std::fopen(path.c_str(), "rb");
    if (in != nullptr) {
      char buf[1 << 16];
      for (size_t n; (n = std::fread(buf, 1, sizeof(buf), in)) > 0;) kept_.append(buf, n);
      std::fclose(in);
      if (!kept_.empty() && kept_.back() != '\n') kept_ += '\n';
    }
  }
  path_ = path;
  open_ = true;
  return OkStatus();
}

Status MetricsWriter::Write(const std::string& bytes) {
  for (size_t done = 0; done < bytes.size();) {
    const ssize_t n = write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::Unavailable("cannot write --metrics-out " + path_ + ": " +
                                 std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return OkStatus();
}

Status MetricsWriter::Line(const std::string& json) {
  if (!open_ || !error_.ok()) return error_;
  if (fd_ >= 0) {
    error_ = Write(json + "\n");
    return error_;
  }
  // The first record: the whole file under a temporary name, then renamed over the path.
  TS_RETURN_IF_ERROR(safe_output::CheckOutputFile(path_, "--metrics-out", {}));
  const std::string tmp = safe_output::TemporaryPathFor(path_);
  fd_ = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    error_ = Status::Unavailable("cannot create " + tmp + ": " + std::strerror(errno));
    return error_;
  }
  error_ = Write(kept_ + json + "\n");
  if (error_.ok() && fsync(fd_) != 0) {
    error_ = Status::Unavailable("cannot fsync " + tmp + ": " + std::strerror(errno));
  }
  if (error_.ok() && rename(tmp.c_str(), path_.c_str()) != 0) {
    error_ = Status::Unavailable("cannot rename " + tmp + " to --metrics-out " + path_ + ": " +
                                 std::strerror(errno));
  }
  if (error_.ok()) error_ = safe_output::SyncParentDir(path_);
  if (!error_.ok() && fd_ >= 0) {
    close(fd_);
    fd_ = -1;
    unlink(tmp.c_str());
  }
  kept_.clear();
  return error_;
}

Status MetricsWriter::Train(int epoch, double loss, double samples_per_sec) {
  const std::string where =
      "--metrics-out " + path_ + ", train record of epoch " + std::to_string(epoch);
  TS_RETURN_IF_ERROR(
      CheckFiniteMetrics(where, {{"loss", loss}, {"samples_per_sec", samples_per_sec}}));
  return Line("{\"event\":\"train\",\"epoch\":" + std::to_string(epoch) + ",\"loss\":" +
              JsonNumber(loss) + ",\"samples_per_sec\":" + JsonNumber(samples_per_sec) + "}");
}

Status MetricsWriter::Eval(int epoch, int64_t step, const std::string& split,
                           const MetricValues& metrics) {
  TS_RETURN_IF_ERROR(CheckFiniteMetrics(
      "--metrics-out " + path_ + ", " + split + " evaluation of epoch " + std::to_string(epoch) +
          (step >= 0 ? " step " + std::to_string(step) : std::string()),
      metrics));
  std::string line = "{\"event\":\"eval\",\"epoch\":" + std::to_string(epoch);
  if (step >= 0) line += ",\"step\":" + std::to_string(step);
  line += ",\"split\":\"" + split + "\"";
  for (const auto& [name, value] : metrics) line += ",\"" + name + "\":" + JsonNumber(value);
  return Line(line + "}");
}

Status MetricsWriter::Done(int epochs, const MetricValues& metrics, double train_seconds,
                           double samples_per_sec, const std::vector<JsonField>& extra) {
  MetricValues all = metrics;
  all.emplace_back("train_seconds", train_seconds);
  all.emplace_back("samples_per_sec", samples_per_sec);
  TS_RETURN_IF_ERROR(CheckFiniteMetrics("--metrics-out " + path_ + ", done record", all));
  std::string line = "{\"event\":\"done\",\"epochs\":" + std::to_string(epochs);
  for (const auto& [name, value] : all) line += ",\"" + name + "\":" + JsonNumber(value);
  for (const auto& [name, json] : extra) line += ",\"" + name + "\":" + json;
  return Line(line + "}");
}

Status MetricsWriter::Close() {
  open_ = false;
  if (fd_ >= 0) {
    if (fsync(fd_) != 0 && error_.ok()) {
      error_ =
          Status::Unavailable("cannot fsync --metrics-out " + path_ + ": " + std::strerror(errno));
    }
    if (close(fd_) != 0 && error_.ok()) {
      error_ =
          Status::Unavailable("cannot close --metrics-out " + path_ + ": " + std::strerror(errno));
    }
    fd_ = -1;
  }
  return error_;
}

}  // namespace tessera::worker

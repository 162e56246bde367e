#include "worker/metrics_writer.h"

#include <cerrno>
#include <cmath>
#include <cstring>

namespace tessera::worker {

std::string JsonNumber(double value) {
  if (!std::isfinite(value)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.17g", value);
  return buf;
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

Status MetricsWriter::Open(const std::string& path, bool append) {
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (file_ == nullptr) {
    return Status::InvalidArgument("cannot write --metrics-out " + path + ": " +
                                   std::strerror(errno));
  }
  path_ = path;
  return OkStatus();
}

void MetricsWriter::Line(const std::string& json) {
  if (file_ == nullptr) return;
  if (std::fputs(json.c_str(), file_) < 0 || std::fputc('\n', file_) == EOF ||
      std::fflush(file_) != 0) {
    failed_ = true;
  }
}

void MetricsWriter::Train(int epoch, double loss, double samples_per_sec) {
  Line("{\"event\":\"train\",\"epoch\":" + std::to_string(epoch) + ",\"loss\":" + JsonNumber(loss) +
       ",\"samples_per_sec\":" + JsonNumber(samples_per_sec) + "}");
}

void MetricsWriter::Eval(int epoch, int64_t step, const std::string& split,
                         const MetricValues& metrics) {
  std::string line = "{\"event\":\"eval\",\"epoch\":" + std::to_string(epoch);
  if (step >= 0) line += ",\"step\":" + std::to_string(step);
  line += ",\"split\":\"" + split + "\"";
  for (const auto& [name, value] : metrics) line += ",\"" + name + "\":" + JsonNumber(value);
  Line(line + "}");
}

void MetricsWriter::Done(int epochs, const MetricValues& metrics, double train_seconds,
                         double samples_per_sec, const std::vector<JsonField>& extra) {
  std::string line = "{\"event\":\"done\",\"epochs\":" + std::to_string(epochs);
  for (const auto& [name, value] : metrics) line += ",\"" + name + "\":" + JsonNumber(value);
  line += ",\"train_seconds\":" + JsonNumber(train_seconds) +
          ",\"samples_per_sec\":" + JsonNumber(samples_per_sec);
  for (const auto& [name, json] : extra) line += ",\"" + name + "\":" + json;
  Line(line + "}");
}

Status MetricsWriter::Close() {
  if (file_ == nullptr) return OkStatus();
  int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0 || failed_) return Status::DataLoss("writing " + path_ + " failed");
  return OkStatus();
}

}  // namespace tessera::worker

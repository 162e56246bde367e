#include "worker/metrics_writer.h"

#include <cmath>
#include <cstdio>

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

Status MetricsWriter::Open(const std::string& path, bool append) {
  TS_RETURN_IF_ERROR(safe_output::CheckOutputFile(path, "--metrics-out", {}));
  contents_.clear();
  if (append) {
    std::FILE* in = std::fopen(path.c_str(), "rb");
    if (in != nullptr) {
      char buf[1 << 16];
      for (size_t n; (n = std::fread(buf, 1, sizeof(buf), in)) > 0;) contents_.append(buf, n);
      std::fclose(in);
      if (!contents_.empty() && contents_.back() != '\n') contents_ += '\n';
    }
  }
  path_ = path;
  open_ = true;
  return OkStatus();
}

Status MetricsWriter::Line(const std::string& json) {
  if (!open_ || !error_.ok()) return error_;
  contents_ += json;
  contents_ += '\n';
  error_ = safe_output::WriteFileAtomically(path_, "--metrics-out", contents_);
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
  return error_;
}

}  // namespace tessera::worker

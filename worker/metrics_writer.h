// Writes --metrics-out: one JSON object per line. Numbers are printed with 17 significant digits
// so two runs can be compared bit for bit. Does nothing until Open() succeeds.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tessera::worker {

// Named metric values, in the order they are written ({"rmse", 0.91}, {"mae", 0.72}).
using MetricValues = std::vector<std::pair<std::string, double>>;
// A field of a record: its name and its JSON value text.
using JsonField = std::pair<std::string, std::string>;

class MetricsWriter {
 public:
  MetricsWriter() = default;
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Creates or truncates `path` (append: adds to it, as a resumed run does).
  Status Open(const std::string& path, bool append = false);
  // {"event":"train","epoch":E,"loss":L,"samples_per_sec":S}
  void Train(int epoch, double loss, double samples_per_sec);
  // {"event":"eval","epoch":E,"step":S,"split":"test","rmse":R,"mae":M}: one field per metric,
  // in order; no "step" when step < 0.
  void Eval(int epoch, int64_t step, const std::string& split, const MetricValues& metrics);
  // {"event":"done","epochs":E,"rmse":R,"mae":M,"train_seconds":T,"samples_per_sec":S}: the
  // metrics in order, then `extra` (name and JSON value, e.g. "dense_params_identical":true).
  void Done(int epochs, const MetricValues& metrics, double train_seconds, double samples_per_sec,
            const std::vector<JsonField>& extra);
  // Flushes and closes; reports a write error (e.g. a full disk).
  Status Close();

 private:
  void Line(const std::string& json);
  std::FILE* file_ = nullptr;
  std::string path_;
  bool failed_ = false;
};

// A JSON number with round-trip precision; NaN and infinities become null.
std::string JsonNumber(double value);

}  // namespace tessera::worker

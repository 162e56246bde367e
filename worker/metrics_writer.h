// Writes --metrics-out: one JSON object per line. Numbers are printed with 17 significant digits
// so two runs can be compared bit for bit. Does nothing until Open() succeeds.
//
// The file is a safe output (core/safe_output.h): the first record is written, after the
// records kept from before (append), to a temporary name in the file's directory, fsync'd and
// renamed over the path, so the old file is never truncated or damaged; later records are
// appended to the renamed file, one write each. A path that is a device, a directory or `/` is
// refused at Open. A metric is never written as null or nan: a record with a non-finite value is
// refused with InvalidArgument naming it, and nothing of it is written.
//
// Threads: one user (the reporting worker's thread).
#pragma once

#include <cstdint>
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

  // Starts `path` empty (append: with its current records, as a resumed run does). The file is
  // (re)written with the first record. InvalidArgument when the path may not be written.
  Status Open(const std::string& path, bool append = false);
  // {"event":"train","epoch":E,"loss":L,"samples_per_sec":S}
  Status Train(int epoch, double loss, double samples_per_sec);
  // {"event":"eval","epoch":E,"step":S,"split":"test","rmse":R,"mae":M}: one field per metric,
  // in order; no "step" when step < 0.
  Status Eval(int epoch, int64_t step, const std::string& split, const MetricValues& metrics);
  // {"event":"done","epochs":E,"rmse":R,"mae":M,"train_seconds":T,"samples_per_sec":S}: the
  // metrics in order (none without an evaluation), then `extra` (name and JSON value, e.g.
  // "dense_params_identical":true).
  Status Done(int epochs, const MetricValues& metrics, double train_seconds, double samples_per_sec,
              const std::vector<JsonField>& extra);
  // fsyncs and closes the file; reports the first write error (e.g. a full disk).
  Status Close();

 private:
  Status Line(const std::string& json);
  Status Write(const std::string& bytes);
  bool open_ = false;
  std::string path_;
  std::string kept_;  // append: the records from before, until the first record is written
  int fd_ = -1;       // the file, once the first record has been renamed into place
  Status error_;
};

// A JSON number with round-trip precision. REQUIRES: `value` is finite.
std::string JsonNumber(double value);
// InvalidArgument "--metrics-out PATH: <what> <name> is nan ..." unless every value is finite.
Status CheckFiniteMetrics(const std::string& what, const MetricValues& metrics);

}  // namespace tessera::worker

// Writes --metrics-out: one JSON object per line. Numbers are printed with 17 significant digits
// so two runs can be compared bit for bit. Does nothing until Open() succeeds.
#pragma once

#include <cstdio>
#include <string>

#include "core/status.h"

namespace tessera::worker {

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
  // {"event":"eval","epoch":E,"split":"test","rmse":R,"mae":M}
  void Eval(int epoch, const std::string& split, double rmse, double mae);
  // {"event":"done","epochs":E,"rmse":R,"mae":M,"train_seconds":T,"samples_per_sec":S}
  void Done(int epochs, double rmse, double mae, double train_seconds, double samples_per_sec);
  // {"event":"eval","epoch":E,"step":S,"split":"test","auc":A,"logloss":L}
  void EvalCtr(int epoch, int64_t step, const std::string& split, double auc, double logloss);
  // {"event":"done","epochs":E,"auc":A,"logloss":L,"train_seconds":T,"samples_per_sec":S,
  //  "dense_params_identical":B}
  void DoneCtr(int epochs, double auc, double logloss, double train_seconds, double samples_per_sec,
               bool dense_identical);
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

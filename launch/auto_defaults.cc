#include "launch/auto_defaults.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "launch/flags.h"
#include "worker/data/ctr_cache_format.h"

namespace tessera::launch {

StatusOr<int64_t> EstimateLines(const std::string& path) {
  struct stat st;
  std::ifstream in(path, std::ios::binary);
  if (stat(path.c_str(), &st) != 0 || !in) {
    return Status::InvalidArgument(path + ": cannot be read to size the training defaults");
  }
  constexpr int64_t kSample = 1 << 20;
  std::vector<char> head(static_cast<size_t>(std::min<int64_t>(kSample, st.st_size)));
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  const int64_t read = in.gcount();
  // Lines end in \n or \r\n, or (old Mac files, which the readers take too) in \r alone.
  const char end = std::find(head.begin(), head.begin() + read, '\n') != head.begin() + read ||
                           std::find(head.begin(), head.begin() + read, '\r') == head.begin() + read
                       ? '\n'
                       : '\r';
  int64_t lines = std::count(head.begin(), head.begin() + read, end);
  if (read > 0 && head[static_cast<size_t>(read) - 1] != end && read == st.st_size) ++lines;
  if (read == st.st_size || lines == 0) return lines;
  return static_cast<int64_t>(static_cast<double>(st.st_size) * lines / read);
}

StatusOr<int64_t> EstimateCtrRows(const std::string& path) {
  struct stat st;
  char header[worker::kCtrCacheHeaderBytes];
  std::ifstream in(path, std::ios::binary);
  if (stat(path.c_str(), &st) != 0 || !in) {
    return Status::InvalidArgument(path + ": cannot be read to size the training defaults");
  }
  in.read(header, sizeof(header));
  const size_t read = static_cast<size_t>(in.gcount());
  if (!worker::HasCtrCacheMagic(header, read)) return EstimateLines(path);
  TS_ASSIGN_OR_RETURN(const worker::CtrCacheHeader h,
                      worker::DecodeCtrCacheHeader(path, header, static_cast<size_t>(st.st_size)));
  return static_cast<int64_t>(h.num_records);
}

MfAutoDefaults ChooseMfDefaults(int64_t ratings) {
  MfAutoDefaults d;
  if (ratings < 300000) return d;  // tuned on MovieLens 100K u1 (docs/PERFORMANCE.md)
  d.early_stop = 3;
  d.l2_bias = 0.01f;
  if (ratings < 3000000) {  // MovieLens 1M and the like
    d.batch_size = 1024;
    d.lr = d.other_lr = 0.05f;
    d.l2 = 0.05f;
    d.epochs = 60;
    return d;
  }
  // Millions of ratings: large batches keep the servers and the pipeline busy, and with about
  // a hundred ratings per row the data, not the L2 term, holds the factors in. Row-wise Adagrad
  // (one accumulator a row, as LIBMF's rates): on issue 15's planted set, in the blocked order
  // of 46 user bands, lr 0.15 comes within 1 % of the ceiling's best test RMSE after 4 epochs
  // (5 with two workers) and early stopping ends it at 0.581, where per-element Adagrad at its
  // best lr, 0.12, took 6 epochs (8) and ended at 0.5895 (0.594); the ceiling's best is 0.592.
  // Row-wise lr 0.12 ends at 0.578 but takes 5 epochs; 0.18 and 0.2 end at 0.586 and 0.590.
  d.optimizer = kernels::OptimizerKind::kRowwiseAdagrad;
  d.batch_size = 16384;
  d.lr = 0.15f;
  d.other_lr = 0.12f;
  d.l2 = 0.02f;
  d.epochs = 60;
  d.early_stop = 2;
  d.valid_fraction = 0.01;
  return d;
}

namespace {

// Collects the start-up line and the summary's values as flags are chosen.
class Chooser {
 public:
  Chooser(const std::function<bool(const std::string&)>& given,
          std::map<std::string, std::string>* chosen_values)
      : given_(given), chosen_values_(chosen_values) {}

  // Sets *target to `value` unless the user gave `flag`; `format` prints the value alone.
  template <typename T>
  void Choose(const char* flag, T value, T* target, const char* format) {
    if (given_(flag)) return;
    *target = value;
    char part[64];
    std::snprintf(part, sizeof(part), format, value);
    line_ += (line_.empty() ? "--" : ", --") + std::string(flag) + " " + part;
    (*chosen_values_)[flag] = part;
  }

  // Epochs, and early stopping with them (a user who sets --epochs trains that many), and with
  // early stopping on and no --valid file the held-out fraction.
  void ChooseEpochs(int epochs, int early_stop, double valid_fraction,
                    worker::MfTrainerOptions* mf) {
    // A given --early-stop has been parsed into *mf already.
    const bool stops = given_("early-stop") ? mf->early_stop > 0 : early_stop > 0;
    Choose("epochs", epochs, &mf->epochs, stops ? "%d (at most)" : "%d");
    if (!given_("epochs") && early_stop > 0) {
      Choose("early-stop", early_stop, &mf->early_stop, "%d");
    }
    if (mf->early_stop > 0 && mf->valid_path.empty()) {
      Choose("valid-fraction", valid_fraction, &mf->valid_fraction, "%g");
    }
  }

  // "" when nothing was chosen, else the start-up line.
  std::string Line(const char* what, int64_t records, const std::string& path) const {
    if (line_.empty()) return line_;
    char size[64];
    const double n = static_cast<double>(records);
    if (records < 1000) {
      std::snprintf(size, sizeof(size), "for %lld %s", static_cast<long long>(records), what);
    } else {  // 3 digits: 999.5k and up print as 1M, not 1e+03k
      const bool millions = n >= 999500;
      std::snprintf(size, sizeof(size), "for about %.3g%s %s", millions ? n / 1e6 : n / 1e3,
                    millions ? "M" : "k", what);
    }
    return "defaults chosen " + std::string(size) + " in " + path + ": " + line_ +
           " (give a flag to override)";
  }

 private:
  const std::function<bool(const std::string&)>& given_;
  std::map<std::string, std::string>* const chosen_values_;
  std::string line_;
};

}  // namespace

StatusOr<std::string> ApplyMfAutoDefaults(const std::function<bool(const std::string&)>& given,
                                          TrainOptions* o,
                                          std::map<std::string, std::string>* chosen_values) {
  const char* const kFlags[] = {"batch-size",    "lr", "l2", "l2-bias", "epochs", "early-stop",
                                "valid-fraction"};
  if (std::all_of(std::begin(kFlags), std::end(kFlags), given)) return std::string();
  TS_ASSIGN_OR_RETURN(const int64_t ratings, EstimateLines(o->mf.train_path));
  const MfAutoDefaults d = ChooseMfDefaults(ratings);
  Chooser chooser(given, chosen_values);
  // The optimizer only with its lr; --optimizer's default (adagrad) goes unnamed.
  if (d.optimizer != o->optimizer.kind && !given("lr")) {
    const char* name = kernels::OptimizerName(o->optimizer.kind);
    chooser.Choose("optimizer", kernels::OptimizerName(d.optimizer), &name, "%s");
    o->optimizer.kind = *kernels::ParseOptimizer(name);
  }
  chooser.Choose("batch-size", d.batch_size, &o->mf.batch_size, "%d");
  chooser.Choose("lr", o->optimizer.kind == d.optimizer ? d.lr : d.other_lr, &o->optimizer.lr,
                 "%g");
  chooser.Choose("l2", d.l2, &o->mf.l2, "%g");
  chooser.Choose("l2-bias", d.l2_bias, &o->mf.l2_bias, "%g");
  chooser.ChooseEpochs(d.epochs, d.early_stop, d.valid_fraction, &o->mf);
  return chooser.Line("training ratings", ratings, o->mf.train_path);
}

CtrAutoDefaults ChooseCtrDefaults(int64_t rows) {
  CtrAutoDefaults d;
  if (rows >= 1000000) return d;  // one pass of batch 4096, the benchmark's setting
  d.batch_size = 256;
  if (rows < 1000) {  // too few rows to hold a tenth out and learn from its logloss
    d.epochs = 10;
    return d;
  }
  // Large batches, so that one epoch moves the model little: the deep models overfit a small
  // file within an epoch or two, and the model early stopping ends with is the last epoch's, two
  // past the best. The largest power of two from 256 to 4096 that leaves 3 steps an epoch
  // (Criteo's 8,000 rows: 2048; measured in docs/PERFORMANCE.md, "CTR defaults").
  while (d.batch_size < 4096 && d.batch_size * 2 * 3 <= rows) d.batch_size *= 2;
  d.epochs = 100;
  d.early_stop = 2;
  d.valid_fraction = rows < 100000 ? 0.1 : 0.05;
  return d;
}

StatusOr<std::string> ApplyCtrAutoDefaults(const std::function<bool(const std::string&)>& given,
                                           TrainOptions* o,
                                           std::map<std::string, std::string>* chosen_values) {
  const char* const kFlags[] = {"batch-size", "epochs", "early-stop", "valid-fraction"};
  if (std::all_of(std::begin(kFlags), std::end(kFlags), given)) return std::string();
  TS_ASSIGN_OR_RETURN(const int64_t rows, EstimateCtrRows(o->mf.train_path));
  CtrAutoDefaults d = ChooseCtrDefaults(rows);
  // Early stopping asked for where none is chosen (one pass): epochs for it to end.
  if (given("early-stop") && o->mf.early_stop > 0) d.epochs = std::max(d.epochs, 100);
  Chooser chooser(given, chosen_values);
  chooser.Choose("batch-size", d.batch_size, &o->mf.batch_size, "%d");
  chooser.ChooseEpochs(d.epochs, d.early_stop, d.valid_fraction, &o->mf);
  return chooser.Line("training rows", rows, o->mf.train_path);
}

Status CheckValidationFlags(const TrainOptions& o) {
  if (o.ctr && !o.mf.blocked_order) return Status::InvalidArgument("--order is an MF option");
  if (o.mf.valid_path.empty()) return OkStatus();
  if (o.mf.valid_fraction > 0) {  // checked before the defaults choose a fraction
    return Status::InvalidArgument("--valid and --valid-fraction exclude each other: give one");
  }
  if (o.mf.valid_path == o.mf.train_path) {
    return Status::InvalidArgument("--valid " + o.mf.valid_path +
                                   " is the --train file: give held-out ratings or "
                                   "--valid-fraction");
  }
  if (o.mf.valid_path == o.mf.test_path) {
    return Status::InvalidArgument("--valid " + o.mf.valid_path +
                                   " is the --test file: early stopping on the test set would "
                                   "tune to it; give other ratings or --valid-fraction");
  }
  return OkStatus();
}

}  // namespace tessera::launch

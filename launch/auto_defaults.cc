#include "launch/auto_defaults.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "launch/flags.h"

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

MfAutoDefaults ChooseMfDefaults(int64_t ratings) {
  MfAutoDefaults d;
  if (ratings < 300000) return d;  // tuned on MovieLens 100K u1 (docs/PERFORMANCE.md)
  d.early_stop = 3;
  d.l2_bias = 0.01f;
  if (ratings < 3000000) {  // MovieLens 1M and the like
    d.batch_size = 1024;
    d.lr = 0.05f;
    d.l2 = 0.05f;
    d.epochs = 60;
    return d;
  }
  // Millions of ratings: large batches keep the servers and the pipeline busy, and with about
  // a hundred ratings per row the data, not the L2 term, holds the factors in.
  d.batch_size = 16384;
  d.lr = 0.05f;
  d.l2 = 0.02f;
  d.epochs = 60;
  d.early_stop = 2;
  d.valid_fraction = 0.01;
  return d;
}

StatusOr<std::string> ApplyMfAutoDefaults(const std::function<bool(const std::string&)>& given,
                                          TrainOptions* o,
                                          std::map<std::string, std::string>* chosen_values) {
  const char* const kFlags[] = {"batch-size",    "lr", "l2", "l2-bias", "epochs", "early-stop",
                                "valid-fraction"};
  if (std::all_of(std::begin(kFlags), std::end(kFlags), given)) return std::string();
  TS_ASSIGN_OR_RETURN(const int64_t ratings, EstimateLines(o->mf.train_path));
  const MfAutoDefaults d = ChooseMfDefaults(ratings);
  std::string chosen;
  char part[96];
  // `format` prints the value alone; the line and the summary both take that text.
  auto choose = [&](const char* flag, auto value, auto* target, const char* format) {
    if (given(flag)) return;
    *target = value;
    std::snprintf(part, sizeof(part), format, value);
    chosen += (chosen.empty() ? "--" : ", --") + std::string(flag) + " " + part;
    (*chosen_values)[flag] = part;
  };
  choose("batch-size", d.batch_size, &o->mf.batch_size, "%d");
  choose("lr", d.lr, &o->optimizer.lr, "%g");
  choose("l2", d.l2, &o->mf.l2, "%g");
  choose("l2-bias", d.l2_bias, &o->mf.l2_bias, "%g");
  choose("epochs", d.epochs, &o->mf.epochs, d.early_stop > 0 ? "%d (at most)" : "%d");
  // Early stopping comes with the chosen epochs: a user who sets --epochs trains that many.
  if (!given("epochs") && d.early_stop > 0) {
    choose("early-stop", d.early_stop, &o->mf.early_stop, "%d");
  }
  if (o->mf.early_stop > 0 && o->mf.valid_path.empty()) {
    choose("valid-fraction", d.valid_fraction, &o->mf.valid_fraction, "%g");
  }
  if (chosen.empty()) return chosen;
  std::snprintf(part, sizeof(part), "for about %.3gM training ratings", ratings / 1e6);
  return "defaults chosen " + std::string(part) + " in " + o->mf.train_path + ": " + chosen +
         " (give a flag to override)";
}

Status CheckValidationFlags(const TrainOptions& o) {
  if (o.ctr && (!o.mf.valid_path.empty() || o.mf.valid_fraction > 0 || o.mf.early_stop > 0)) {
    return Status::InvalidArgument(
        "--valid, --valid-fraction and --early-stop are MF options (not yet for " + o.model + ")");
  }
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

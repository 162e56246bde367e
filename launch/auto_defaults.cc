#include "launch/auto_defaults.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
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
  int64_t lines = std::count(head.begin(), head.begin() + read, '\n');
  if (read > 0 && head[static_cast<size_t>(read) - 1] != '\n' && read == st.st_size) ++lines;
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
                                          TrainOptions* o) {
  const bool choose_early_stop = !given("epochs") && !given("early-stop");
  if (given("batch-size") && given("lr") && given("l2") && given("l2-bias") && !choose_early_stop) {
    return std::string();
  }
  TS_ASSIGN_OR_RETURN(const int64_t ratings, EstimateLines(o->mf.train_path));
  const MfAutoDefaults d = ChooseMfDefaults(ratings);
  std::string chosen;
  char part[96];
  auto choose = [&](const char* flag, auto value, auto* target, const char* format) {
    if (given(flag)) return;
    *target = value;
    std::snprintf(part, sizeof(part), format, flag, value);
    chosen += (chosen.empty() ? "" : ", ") + std::string(part);
  };
  choose("batch-size", d.batch_size, &o->mf.batch_size, "--%s %d");
  choose("lr", d.lr, &o->optimizer.lr, "--%s %g");
  choose("l2", d.l2, &o->mf.l2, "--%s %g");
  choose("l2-bias", d.l2_bias, &o->mf.l2_bias, "--%s %g");
  if (choose_early_stop) {
    choose("epochs", d.epochs, &o->mf.epochs, d.early_stop > 0 ? "--%s %d (at most)" : "--%s %d");
    if (d.early_stop > 0) choose("early-stop", d.early_stop, &o->mf.early_stop, "--%s %d");
  }
  if (o->mf.early_stop > 0 && o->mf.valid_path.empty() && !given("valid-fraction")) {
    choose("valid-fraction", d.valid_fraction, &o->mf.valid_fraction, "--%s %g");
  }
  if (chosen.empty()) return chosen;
  std::snprintf(part, sizeof(part), "for about %.3gM training ratings", ratings / 1e6);
  return "defaults chosen " + std::string(part) + " in " + o->mf.train_path + ": " + chosen +
         " (give a flag to override)";
}

}  // namespace tessera::launch

#include "launch/job_identity.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "core/checkpoint.h"
#include "core/logging.h"

namespace tessera::launch {
namespace {

constexpr size_t kFingerprintBytes = 1 << 20;

// The shortest decimal text that reads back as `v` ("0.05", not "0.0500000007").
std::string FloatText(float v) {
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, static_cast<double>(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

std::string Bool(bool b) { return b ? "true" : "false"; }

std::string Trim(const std::string& name) {
  const size_t start = name.find_first_not_of('-');
  return start == std::string::npos ? "" : name.substr(start);
}

}  // namespace

const std::vector<std::string>& IdentityFlags() {
  static const std::vector<std::string> kFlags = {"model",
                                                  "train",
                                                  "test",
                                                  "format",
                                                  "skip-bad-lines",
                                                  "hash-seed",
                                                  "bucketize-ints",
                                                  "dim",
                                                  "emb-dim",
                                                  "mlp",
                                                  "cross-layers",
                                                  "epochs",
                                                  "batch-size",
                                                  "optimizer",
                                                  "lr",
                                                  "l2",
                                                  "l2-bias",
                                                  "init-std",
                                                  "linear-optimizer",
                                                  "linear-lr",
                                                  "dense-optimizer",
                                                  "dense-lr",
                                                  "seed",
                                                  "valid",
                                                  "valid-fraction",
                                                  "early-stop",
                                                  "order"};
  return kFlags;
}

StatusOr<std::string> DataFingerprint(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("cannot read " + path + " for its fingerprint");
  std::string head(kFingerprintBytes, '\0');
  in.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<size_t>(in.gcount()));
  in.clear();
  in.seekg(0, std::ios::end);
  const auto size = static_cast<long long>(in.tellg());
  const uint32_t crc = checkpoint::Crc32(head.data(), head.size());
  char buf[96];
  std::snprintf(buf, sizeof(buf), " (%lld bytes, first MiB CRC-32 0x%08lx)", size,
                static_cast<unsigned long>(crc));
  return path + buf;
}

StatusOr<std::vector<proto::JobConfigEntry>> JobIdentity(const TrainOptions& o) {
  std::vector<std::pair<std::string, std::string>> values;
  auto add = [&](const std::string& flag, const std::string& value) {
    values.emplace_back(flag, value);
  };
  add("model", o.model);
  if (o.embedded_default) {
    add("train", "(the embedded demo's planted set)");
  } else {
    TS_ASSIGN_OR_RETURN(std::string train, DataFingerprint(o.mf.train_path));
    add("train", train);
    std::string test = "(none)";
    if (!o.mf.test_path.empty()) {
      TS_ASSIGN_OR_RETURN(test, DataFingerprint(o.mf.test_path));
    }
    add("test", test);
  }
  add("skip-bad-lines", Bool(o.mf.skip_bad_lines));
  add("epochs", std::to_string(o.mf.epochs));
  add("batch-size", std::to_string(o.mf.batch_size));
  add("optimizer", kernels::OptimizerName(o.optimizer.kind));
  add("lr", FloatText(o.optimizer.lr));
  add("init-std", FloatText(o.init_std));
  add("seed", std::to_string(o.init_seed));
  std::string valid = "(none)";
  if (!o.mf.valid_path.empty()) {
    TS_ASSIGN_OR_RETURN(valid, DataFingerprint(o.mf.valid_path));
  }
  add("valid", valid);
  add("valid-fraction", FloatText(static_cast<float>(o.mf.valid_fraction)));
  add("early-stop", std::to_string(o.mf.early_stop));
  if (o.ctr) {
    const worker::CtrTrainerOptions& c = o.ctr_options;
    add("format", worker::CtrFormatName(c.read.format));
    add("hash-seed", std::to_string(c.read.hash_seed));
    add("bucketize-ints", Bool(c.read.bucketize_integers));
    add("emb-dim", std::to_string(c.model.emb_dim));
    std::string mlp;
    for (int w : c.model.mlp) mlp += (mlp.empty() ? "" : ",") + std::to_string(w);
    add("mlp", mlp);
    add("cross-layers", std::to_string(c.model.cross_layers));
    add("linear-optimizer", kernels::OptimizerName(o.linear_optimizer.kind));
    add("linear-lr", FloatText(o.linear_optimizer.lr));
    add("dense-optimizer", kernels::OptimizerName(c.dense_optimizer.kind));
    add("dense-lr", FloatText(c.dense_optimizer.lr));
  } else {
    add("format", worker::RatingFormatName(o.mf.format));
    add("dim", std::to_string(o.mf.dim));
    add("l2", FloatText(o.mf.l2));
    add("l2-bias", FloatText(o.mf.l2_bias));
    // "blocked" was the order before its blocks went in pairs and users into smaller bands
    // (worker/mf_order.h): another order within an epoch, so a checkpoint of it resumes only with
    // --resume-override order.
    add("order", o.mf.blocked_order ? "blocked in pairs" : "shuffled");
  }
  std::vector<proto::JobConfigEntry> identity;
  for (const std::string& flag : IdentityFlags()) {
    for (const auto& [name, value] : values) {
      if (name != flag) continue;
      proto::JobConfigEntry entry;
      entry.set_flag(name);
      entry.set_value(value);
      identity.push_back(std::move(entry));
    }
  }
  return identity;
}

Status CheckResumeOverrides(const std::vector<std::string>& overrides) {
  const auto& flags = IdentityFlags();
  for (const std::string& name : overrides) {
    if (std::find(flags.begin(), flags.end(), Trim(name)) == flags.end()) {
      std::string all;
      for (const auto& f : flags) all += (all.empty() ? "" : ", ") + f;
      return Status::InvalidArgument("--resume-override: '" + name +
                                     "' is not an option of the job's identity (one of " + all +
                                     ")");
    }
  }
  return OkStatus();
}

namespace {

// The value of a flag that an older checkpoint's identity lacks because the job could not set it
// then (the early-stopping flags; --order, whose only order then was the shuffle), which matches
// such a checkpoint.
// Flags that fix what a table's rows hold (their weights and the optimizer's state): the
// restore refuses rows of another shape, so an override of these cannot help.
bool ShapesRows(const std::string& flag) {
  return flag == "optimizer" || flag == "linear-optimizer" || flag == "dim" || flag == "emb-dim";
}

bool NeutralWhenAbsent(const std::string& flag, const std::string& value) {
  return (flag == "valid" && value == "(none)") || (flag == "valid-fraction" && value == "0") ||
         (flag == "early-stop" && value == "0") || (flag == "order" && value == "shuffled");
}

}  // namespace

Status CompareJobIdentity(const std::vector<proto::JobConfigEntry>& checkpoint,
                          const std::vector<proto::JobConfigEntry>& run,
                          const std::vector<std::string>& overrides, const std::string& dir) {
  std::map<std::string, std::string> old_values, new_values;
  for (const auto& e : checkpoint) old_values[e.flag()] = e.value();
  for (const auto& e : run) new_values[e.flag()] = e.value();
  const std::string absent = "(not set)";
  std::string refused, allowed;
  std::vector<std::string> refused_flags;
  for (const std::string& flag : IdentityFlags()) {
    auto o = old_values.find(flag);
    auto n = new_values.find(flag);
    if (o == old_values.end() && n == new_values.end()) continue;
    const std::string& was = o == old_values.end() ? absent : o->second;
    const std::string& now = n == new_values.end() ? absent : n->second;
    if (was == now) continue;
    // Flags an older checkpoint lacks count as what it did then (NeutralWhenAbsent).
    if (o == old_values.end() && NeutralWhenAbsent(flag, now)) continue;
    const std::string line = "--" + flag + " " + was + " (this run: " + now + ")";
    bool overridden = false;
    for (const std::string& name : overrides) overridden |= Trim(name) == flag;
    if (overridden) {
      allowed += (allowed.empty() ? "" : "; ") + line;
    } else {
      refused += (refused.empty() ? "" : "; ") + line;
      refused_flags.push_back(flag);
    }
  }
  if (!refused.empty()) {
    std::string list, fixed;
    for (const auto& f : refused_flags) {
      std::string& to = ShapesRows(f) ? fixed : list;
      to += (to.empty() ? "" : ",") + f;
    }
    std::string message = "checkpoint " + dir +
                          " was written by a job with a different configuration: " + refused +
                          ". Resume with the checkpoint's values (give them as flags where this "
                          "run chose others for the data's size), start a new --checkpoint-dir";
    if (!list.empty()) message += ", or allow the change with --resume-override " + list;
    if (!fixed.empty()) message += " (" + fixed + ": the checkpoint's rows are of its values)";
    return Status::InvalidArgument(message);
  }
  if (!allowed.empty()) {
    TS_LOG(WARNING) << "resuming " << dir
                    << " with changes allowed by --resume-override: " << allowed;
  }
  return OkStatus();
}

}  // namespace tessera::launch

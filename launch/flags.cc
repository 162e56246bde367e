#include "launch/flags.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "core/safe_output.h"
#include "kernels/dense_optimizer.h"
#include "launch/auto_defaults.h"

namespace po = boost::program_options;

namespace tessera::launch {
namespace {

ParseOutcome Fail(const std::string& message) { return {false, 2, message}; }

// Boost 1.74's error_with_option_name::what() replaces each %placeholder% of its message until
// none is left, so an option value or name that holds one ("dim = %value%") made it loop forever
// (found by fuzz_config). The substitutions lose their '%' before what() runs.
struct DefusedOptionError : po::error_with_option_name {
  static void Defuse(const po::error& e) {
    auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
    if (named == nullptr) return;
    auto& substitutions =
        const_cast<po::error_with_option_name*>(named)->*(&DefusedOptionError::m_substitutions);
    for (auto& entry : substitutions) {
      std::replace(entry.second.begin(), entry.second.end(), '%', '?');
    }
  }
};

std::string ErrorText(const po::error& e) {
  DefusedOptionError::Defuse(e);
  return e.what();
}

bool IsReadableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), R_OK) == 0;
}

// Parses an INI file whose keys may sit in sections ("[model]\ndim = 32" sets "dim").
Status StoreConfigFile(const std::string& path, const po::options_description& desc,
                       po::variables_map* vm) {
  // Checked before opening: opening a FIFO blocks until a writer comes, and a directory opens
  // and reads as an empty file.
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument("--config " + path + " is " +
                                   (S_ISDIR(st.st_mode) ? "a directory" : "not a regular file") +
                                   ": give an INI file");
  }
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read --config " + path);
  po::parsed_options parsed(&desc);
  try {
    parsed = po::parse_config_file(in, desc, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    return Status::InvalidArgument("--config " + path + ": " + ErrorText(e));
  }
  for (po::option& o : parsed.options) {
    std::string name = o.string_key;
    const size_t dot = name.rfind('.');
    if (dot != std::string::npos) name = name.substr(dot + 1);
    // An empty name ("x." or "[s]\n.") matches every option: find_nothrow throws ambiguous_option
    // then, which escaped as an uncaught exception (exit 134; found by fuzz_config).
    bool known = false;
    try {
      known = !name.empty() && name != "config" && desc.find_nothrow(name, false) != nullptr;
    } catch (const po::error&) {
    }
    if (!known) {
      return Status::InvalidArgument("--config " + path + ": unknown option '" + o.string_key +
                                     "'");
    }
    o.string_key = name;
    o.unregistered = false;
  }
  try {
    po::store(parsed, *vm);
  } catch (const po::error& e) {
    return Status::InvalidArgument("--config " + path + ": " + ErrorText(e));
  }
  return OkStatus();
}

// One "name = value" line per option; `preset` names options the demo preset replaced.
// `preset`: options the embedded demo set; `device_default`: options set for the device
// (name -> the value taken).
std::string Summarize(const po::variables_map& vm, const std::set<std::string>& preset = {},
                      const std::map<std::string, std::string>& device_default = {},
                      const std::map<std::string, std::string>& data_default = {}) {
  std::ostringstream out;
  for (const auto& [name, value] : vm) {
    if (preset.count(name)) {
      out << "  " << name << " = (demo preset, see --help)\n";
      continue;
    }
    if (auto it = device_default.find(name); it != device_default.end()) {
      out << "  " << name << " = " << it->second << " (default for --device cuda)\n";
      continue;
    }
    if (auto it = data_default.find(name); it != data_default.end()) {
      out << "  " << name << " = " << it->second << " (chosen for the data's size)\n";
      continue;
    }
    out << "  " << name << " = ";
    const auto& any = value.value();
    if (const auto* s = boost::any_cast<std::string>(&any)) {
      out << *s;
    } else if (const auto* i = boost::any_cast<int>(&any)) {
      out << *i;
    } else if (const auto* f = boost::any_cast<float>(&any)) {
      out << *f;
    } else if (const auto* d = boost::any_cast<double>(&any)) {
      out << *d;
    } else if (const auto* u = boost::any_cast<uint64_t>(&any)) {
      out << *u;
    } else if (const auto* i64 = boost::any_cast<int64_t>(&any)) {
      out << *i64;
    } else if (const auto* b = boost::any_cast<bool>(&any)) {
      out << (*b ? "true" : "false");
    } else {
      out << "(set)";
    }
    out << (value.defaulted() ? " (default)" : "") << "\n";
  }
  return out.str();
}

// Runs Boost.Program_options over `args` (+ --config) and returns the outcome of the parse.
// `help` (default: desc) is what --help lists: desc may hold hidden options besides.
ParseOutcome ParseWith(const std::vector<std::string>& args, const po::options_description& desc,
                       const std::string& usage, po::variables_map* vm,
                       const po::options_description* help = nullptr) {
  try {
    po::store(po::command_line_parser(args).options(desc).run(), *vm);
  } catch (const po::error& e) {
    return Fail(ErrorText(e) + " (see --help)");
  }
  if (vm->count("help")) {
    std::ostringstream out;
    out << usage << "\n" << (help != nullptr ? *help : desc);
    return {false, 0, out.str()};
  }
  if (vm->count("config")) {
    Status s = StoreConfigFile((*vm)["config"].as<std::string>(), desc, vm);
    if (!s.ok()) return Fail(s.message());
  }
  try {
    po::notify(*vm);
  } catch (const po::error& e) {
    return Fail(ErrorText(e) + " (see --help)");
  }
  return {true, 0, ""};
}

}  // namespace

ParseOutcome ParseTrainOptions(const std::vector<std::string>& args, TrainOptions* options) {
  TrainOptions& o = *options;
  std::string format = "auto", optimizer = "adagrad", device = "cpu", devices, transport = "inproc",
              shared_memory = "auto", order = "blocked";
  std::string mlp = "400,400,400", dense_optimizer = "adam", linear_optimizer = "ftrl";
  uint64_t seed = 1;
  worker::CtrTrainerOptions& ctr = o.ctr_options;
  float dense_lr = 0.001f, linear_lr = 2.0f;
  int timeout_s = 600, register_timeout_s = 120;
  double heartbeat_timeout_s = 6.0;
  std::string resume_override;
  po::options_description desc("tessera train options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value<std::string>(&o.config_path), "read options from an INI file; flags override it")
    ("model", po::value<std::string>(&o.model)->default_value("mf"), "model: mf (biased matrix factorisation) | lr | fm | deepfm | wide_deep | dcn_v2 (CTR models)")
    ("train", po::value<std::string>(&o.mf.train_path), "training ratings file (omit for the embedded demo: a generated planted set, trained with --l2 0.02 --lr 0.05 --batch-size 256 --epochs 20 unless given)")
    ("test", po::value<std::string>(&o.mf.test_path), "test ratings file, evaluated after every epoch")
    ("valid", po::value<std::string>(&o.mf.valid_path), "validation data for --early-stop, in the --train file's format (never --test)")
    ("valid-fraction", po::value<double>(&o.mf.valid_fraction)->default_value(0), "hold this fraction of the training data out for --early-stop when no --valid is given (default: chosen with the epochs)")
    ("early-stop", po::value<int>(&o.mf.early_stop)->default_value(0), "end training after N epochs without a better validation RMSE (MF) or logloss (CTR); 0: never (default: chosen with the epochs when --epochs is not given)")
    ("format", po::value<std::string>(&format)->default_value("auto"), "input format: mf: auto|tab|dat|csv|libmf; CTR: auto|criteo|libsvm|libffm|cache")
    ("order", po::value<std::string>(&order)->default_value(order), "MF: the epoch's order: blocked (users and items hashed into bands of about 32768 ids, users into smaller bands until a block holds about 12 steps; the blocks of a user band x an item band visited in a shuffled order, in pairs that share no band where there are two bands of each kind, each block shuffled: steps touch rows the caches hold, and one worker pulls ahead; tables under 32768 users and items are one block, the plain shuffle) | shuffled (every rating shuffled)")
    ("skip-bad-lines", po::bool_switch(&o.mf.skip_bad_lines), "count and skip malformed lines instead of stopping")
    ("dim", po::value<int>(&o.mf.dim)->default_value(o.mf.dim), "latent factors per user/item")
    ("epochs", po::value<int>(&o.mf.epochs)->default_value(o.mf.epochs), "passes over the training data (default: chosen from the size of --train, see the start-up line)")
    ("batch-size", po::value<int>(&o.mf.batch_size)->default_value(o.mf.batch_size), "ratings (rows) per worker per step (default: chosen from the size of --train; MF with --device cuda: 8192)")
    ("lr", po::value<float>(&o.optimizer.lr)->default_value(o.optimizer.lr), "learning rate of the embedding optimizer (MF default: chosen from the size of --train; CTR default: 0.001)")
    ("l2", po::value<float>(&o.mf.l2)->default_value(o.mf.l2), "L2 regularisation of the factors (per rating; default: chosen from the size of --train)")
    ("l2-bias", po::value<float>(&o.mf.l2_bias)->default_value(o.mf.l2_bias), "L2 regularisation of the biases (per rating; default: chosen from the size of --train)")
    ("optimizer", po::value<std::string>(&optimizer)->default_value("adagrad"), "embedding optimizer on the servers: sgd|adagrad|adam|ftrl|rowwise-adagrad (one accumulator per row: 0.5-0.6x adagrad's bytes a row; CTR default: adam; MF on 3M+ ratings without --lr: rowwise-adagrad)")
    ("init-std", po::value<float>(&o.init_std)->default_value(o.init_std), "std-dev of the initial factors / embeddings")
    ("emb-dim", po::value<int>(&ctr.model.emb_dim)->default_value(ctr.model.emb_dim), "CTR: embedding dimension per field")
    ("mlp", po::value<std::string>(&mlp)->default_value(mlp), "CTR: hidden layer widths of the MLP, comma separated")
    ("cross-layers", po::value<int>(&ctr.model.cross_layers)->default_value(ctr.model.cross_layers), "CTR: cross layers of dcn_v2")
    ("dense-optimizer", po::value<std::string>(&dense_optimizer)->default_value(dense_optimizer), "CTR: optimizer of the replicated dense parameters: sgd|adagrad|adam")
    ("dense-lr", po::value<float>(&dense_lr)->default_value(dense_lr), "CTR: learning rate of the dense optimizer")
    ("linear-optimizer", po::value<std::string>(&linear_optimizer)->default_value(linear_optimizer), "CTR: optimizer of the first-order (1-dim) table: sgd|adagrad|adam|ftrl|rowwise-adagrad")
    ("linear-lr", po::value<float>(&linear_lr)->default_value(linear_lr), "CTR: learning rate (FTRL alpha) of the first-order table; the loss is the batch mean, so FTRL wants a larger alpha than per-example FTRL")
    ("eval-every", po::value<int64_t>(&ctr.eval_every)->default_value(0), "CTR: evaluate on --test every N steps (0: after each epoch only)")
    ("hash-seed", po::value<uint64_t>(&ctr.read.hash_seed)->default_value(0), "CTR: seed of the (field, value) -> key hash")
    ("bucketize-ints", po::bool_switch(&ctr.read.bucketize_integers), "CTR (criteo): integer features also as bucketised categorical fields")
    ("servers", po::value<int>(&o.servers)->default_value(1), "parameter servers")
    ("workers", po::value<int>(&o.workers)->default_value(1), "workers (under mpirun: the remaining ranks)")
    ("server-threads", po::value<int>(&o.server_threads)->default_value(1), "shard threads per server")
    ("threads-per-shard", po::value<int>(&o.threads_per_shard)->default_value(0), "1 or 2: with 2, each shard thread has a helper that takes half the rows of a large push's update and pull's copy (the same bits either way); 0: 2 for MF, except 1 in a job of one worker in the blocked order (where the order allows, its pulls go ahead and the worker takes the other core), and 1 for CTR")
    ("reader-threads", po::value<int>(&o.mf.reader_threads)->default_value(2), "parser threads per worker")
    ("compute-threads", po::value<int>(&o.mf.compute_threads)->default_value(0), "MF on CPU: threads per worker for a step's gradient, 1 or 2 (the same bits either way); 0: 1 in a job of one worker in the blocked order (where the order allows, its pulls go ahead and the server takes the other core; without, 1 measured the same as 2 on 2 cores), else 2")
    ("seed", po::value<uint64_t>(&seed)->default_value(1), "seed of row initialisation and shuffling")
    ("deterministic", po::bool_switch(&o.deterministic), "apply each step's pushes in worker order and reduce on the device without float atomics: bit-identical runs")
    ("metrics-out", po::value<std::string>(&o.mf.metrics_out), "write JSON-lines metrics to this file")
    ("device", po::value<std::string>(&device)->default_value("cpu"), "compute device of the workers: cpu | cuda (one GPU per worker: a host's workers take the devices of their local ranks; more workers on a host than devices is an error) | auto (cuda when a device is usable, else cpu)")
    ("devices", po::value<std::string>(&devices), "with --device cuda|auto: the CUDA device ordinals this host's workers use, in local-rank order, e.g. 2,3 (default: 0,1,...; ordinals count after CUDA_VISIBLE_DEVICES)")
    ("allow-tf32", po::bool_switch(&ctr.allow_tf32), "CTR on --device cuda: let cuBLAS run the dense layers' products on TF32 tensor cores (faster, about 10 mantissa bits per product); default: full FP32")
    ("transport", po::value<std::string>(&transport)->default_value("inproc"), "in one process: inproc|zmq (mpirun always uses zmq)")
    ("shared-memory", po::value<std::string>(&shared_memory)->default_value("auto"), "auto|off: over ZeroMQ between processes on one host, pass large frames (pull replies, gradients) through shared memory instead of the socket, after a start-up check")
    ("auth-key", po::value<std::string>(&o.auth_key_path), "the job secret (a file only its owner may read, written by tessera keygen) that authenticates the job's processes to each other (ZeroMQ CURVE); default: a secret generated per job and handed to the ranks over MPI at start-up")
    ("insecure", po::bool_switch(&o.insecure), "no authentication between processes (ZeroMQ NULL mechanism): allowed only when every process runs on this host (loopback)")
    ("timeout", po::value<int>(&timeout_s)->default_value(600), "seconds any single wait for a peer may take")
    ("register-timeout", po::value<int>(&register_timeout_s)->default_value(120), "seconds to wait for all nodes to join")
    ("checkpoint-dir", po::value<std::string>(&o.checkpoint_dir), "write checkpoints under DIR (DIR/step-N, DIR/latest): at the end of training, every --checkpoint-every steps, with --checkpoint-epochs after every epoch, and on SIGUSR1 (then continue) or SIGTERM (then stop)")
    ("checkpoint-every", po::value<int64_t>(&o.checkpoint_every)->default_value(0), "steps between checkpoints (0: none by step count)")
    ("checkpoint-epochs", po::bool_switch(&o.checkpoint_epochs), "also write a checkpoint after every epoch")
    ("keep-checkpoints", po::value<int>(&o.keep_checkpoints)->default_value(0), "keep only the newest K complete checkpoints (0: keep all)")
    ("resume", po::value<std::string>(&o.resume), "resume from a checkpoint: DIR/step-N, a checkpoint root, or auto (the newest complete one under --checkpoint-dir; none there: start fresh). Servers may differ in number, workers may not")
    ("resume-override", po::value<std::string>(&resume_override), "with --resume: the options of the job's identity allowed to differ from the checkpoint's, comma separated (e.g. lr,epochs); any other difference stops the job with exit 2")
    ("heartbeat-timeout", po::value<double>(&heartbeat_timeout_s)->default_value(heartbeat_timeout_s), "separate processes: seconds without a heartbeat before a node counts as lost and the job stops")
    ("v", po::value<int>(&o.verbosity)->default_value(0), "log verbosity");
  // clang-format on
  po::variables_map vm;
  ParseOutcome outcome = ParseWith(args, desc, "usage: tessera train [options]", &vm, &desc);
  if (!outcome.run) return outcome;

  o.ctr = o.model != "mf";
  if (o.ctr) {
    auto kind = worker::ParseCtrModel(o.model);
    if (!kind.ok()) return Fail("--model: " + kind.status().message() + " or mf");
    ctr.model.kind = *kind;
    auto parsed_format = worker::ParseCtrFormat(format);
    if (!parsed_format.ok()) return Fail("--format: " + parsed_format.status().message());
    ctr.read.format = *parsed_format;
  } else {
    auto parsed_format = worker::ParseRatingFormat(format);
    if (!parsed_format.ok()) return Fail("--format: " + parsed_format.status().message());
    o.mf.format = *parsed_format;
  }
  auto parsed_optimizer = kernels::ParseOptimizer(optimizer);
  if (!parsed_optimizer.ok()) return Fail("--optimizer: " + parsed_optimizer.status().message());
  o.optimizer.kind = *parsed_optimizer;
  if (o.ctr) {  // CTR defaults where the MF ones do not fit, then CTR's own flags
    if (vm["optimizer"].defaulted()) o.optimizer.kind = kernels::OptimizerKind::kAdam;
    if (vm["lr"].defaulted()) o.optimizer.lr = 0.001f;
    if (vm["epochs"].defaulted()) o.mf.epochs = 1;
    if (vm["batch-size"].defaulted()) o.mf.batch_size = 4096;
    ctr.model.mlp.clear();
    std::stringstream widths(mlp);
    for (std::string w; std::getline(widths, w, ',');) {
      try {
        size_t used = 0;
        ctr.model.mlp.push_back(std::stoi(w, &used));
        if (used != w.size()) throw std::invalid_argument(w);
      } catch (const std::exception&) {
        return Fail("--mlp " + mlp + ": '" + w + "' is not a layer width");
      }
    }
    auto parsed_dense = kernels::ParseOptimizer(dense_optimizer);
    if (!parsed_dense.ok() || !kernels::IsDenseOptimizer(*parsed_dense)) {
      return Fail("--dense-optimizer " + dense_optimizer + " is not one of sgd|adagrad|adam");
    }
    ctr.dense_optimizer.kind = *parsed_dense;
    ctr.dense_optimizer.lr = dense_lr;
    auto parsed_linear = kernels::ParseOptimizer(linear_optimizer);
    if (!parsed_linear.ok()) return Fail("--linear-optimizer: " + parsed_linear.status().message());
    o.linear_optimizer.kind = *parsed_linear;
    o.linear_optimizer.lr = linear_lr;
    for (const kernels::OptimizerParams* p :
         {&o.optimizer, &o.linear_optimizer, &ctr.dense_optimizer}) {
      Status valid = kernels::ValidateOptimizerParams(*p);
      if (!valid.ok()) return Fail(valid.message());
    }
    if (ctr.eval_every < 0) return Fail("--eval-every must be >= 0");
  }
  auto parsed_device = ParseDeviceChoice(device);
  if (!parsed_device.ok()) return Fail("--device: " + parsed_device.status().message());
  o.device = *parsed_device;
  o.mf.device = o.device == DeviceChoice::kCuda ? kernels::Device::kCuda : kernels::Device::kCpu;
  if (vm.count("devices")) {
    if (o.device == DeviceChoice::kCpu) return Fail("--devices needs --device cuda or auto");
    auto parsed_devices = ParseDeviceList(devices);
    if (!parsed_devices.ok()) return Fail("--devices: " + parsed_devices.status().message());
    o.devices = *parsed_devices;
  }
  if (transport != "inproc" && transport != "zmq")
    return Fail("--transport " + transport + " is not one of inproc|zmq");
  o.transport = transport == "zmq" ? TransportKind::kZmq : TransportKind::kInProc;
  if (order != "blocked" && order != "shuffled") return Fail("--order must be blocked|shuffled");
  o.mf.blocked_order = order == "blocked";
  if (shared_memory != "auto" && shared_memory != "off")
    return Fail("--shared-memory " + shared_memory + " is not one of auto|off");
  o.shared_memory = shared_memory == "auto";
  if (o.insecure && !o.auth_key_path.empty())
    return Fail("--insecure and --auth-key exclude each other");
  if (o.mf.dim < 1 || o.mf.dim > 4096) return Fail("--dim must be in [1, 4096]");
  if (o.mf.epochs < 1) return Fail("--epochs must be at least 1");
  if (o.mf.early_stop < 0) return Fail("--early-stop must be >= 0");
  if (!(o.mf.valid_fraction >= 0 && o.mf.valid_fraction <= 0.5)) {
    return Fail("--valid-fraction must be in [0, 0.5]");
  }
  if (o.mf.batch_size < 1 || o.mf.batch_size > (1 << 24)) {
    return Fail("--batch-size must be in [1, 16777216]");
  }
  if (!(o.optimizer.lr > 0) || !std::isfinite(o.optimizer.lr)) return Fail("--lr must be > 0");
  if (!(o.mf.l2 >= 0) || !std::isfinite(o.mf.l2)) return Fail("--l2 must be >= 0");
  if (!(o.mf.l2_bias >= 0) || !std::isfinite(o.mf.l2_bias)) return Fail("--l2-bias must be >= 0");
  if (!(o.init_std >= 0) || !std::isfinite(o.init_std)) return Fail("--init-std must be >= 0");
  if (o.servers < 1 || o.servers > 1024) return Fail("--servers must be in [1, 1024]");
  if (o.workers < 1 || o.workers > 1024) return Fail("--workers must be in [1, 1024]");
  if (o.server_threads < 1 || o.server_threads > 64) {
    return Fail("--server-threads must be in [1, 64]");
  }
  if (o.mf.reader_threads < 1 || o.mf.reader_threads > 64) {
    return Fail("--reader-threads must be in [1, 64]");
  }
  if (o.threads_per_shard < 0 || o.threads_per_shard > 2) {
    return Fail("--threads-per-shard must be 0 (automatic), 1 or 2");
  }
  if (o.mf.compute_threads < 0 || o.mf.compute_threads > 2) {
    return Fail("--compute-threads must be 0 (automatic), 1 or 2");
  }
  if (timeout_s < 1 || register_timeout_s < 1) return Fail("timeouts must be at least 1 second");
  if (!(heartbeat_timeout_s >= 0.5 && heartbeat_timeout_s <= 86400)) {
    return Fail("--heartbeat-timeout must be in [0.5, 86400] seconds");
  }
  o.heartbeat_timeout = std::chrono::milliseconds(static_cast<int64_t>(heartbeat_timeout_s * 1000));
  if (o.checkpoint_every < 0) return Fail("--checkpoint-every must be >= 0");
  if (o.keep_checkpoints < 0) return Fail("--keep-checkpoints must be >= 0");
  if (o.checkpoint_dir.empty() && (o.checkpoint_every > 0 || o.checkpoint_epochs)) {
    return Fail("--checkpoint-every / --checkpoint-epochs need --checkpoint-dir");
  }
  if (o.resume == "auto" && o.checkpoint_dir.empty()) {
    return Fail("--resume auto needs --checkpoint-dir (where to look for the newest checkpoint)");
  }
  std::stringstream overrides(resume_override);
  for (std::string name; std::getline(overrides, name, ',');) {
    if (!name.empty()) o.resume_override.push_back(name);
  }
  o.mf.timeout = std::chrono::seconds(timeout_s);
  o.register_timeout = std::chrono::seconds(register_timeout_s);
  o.workers_given = !vm["workers"].defaulted();
  o.mf.seed = seed;
  o.init_seed = seed;
  std::set<std::string> preset_names;
  if (o.ctr && o.mf.train_path.empty()) {
    return Fail("--model " + o.model + " needs --train (e.g. a file from `tessera gen criteo`)");
  }
  if (o.mf.train_path.empty()) {
    if (!o.mf.test_path.empty()) return Fail("--test needs --train");
    o.embedded_default = true;
    o.embedded_data.users = 5000;
    o.embedded_data.items = 1000;
    o.embedded_data.ratings = 500000;
    o.embedded_data.rank = 8;
    o.embedded_data.noise = 0.5;
    o.embedded_data.seed = seed;
    // The MF defaults are tuned for MovieLens; the planted demo set (about 90 ratings per user,
    // σ 0.5) wants less regularisation and fewer, larger steps. Flags the user set still win.
    const std::pair<const char*, std::function<void()>> preset[] = {
        {"l2", [&] { o.mf.l2 = 0.02f; }},
        {"lr", [&] { o.optimizer.lr = 0.05f; }},
        {"batch-size", [&] { o.mf.batch_size = 256; }},
        {"epochs", [&] { o.mf.epochs = 20; }},
    };
    for (const auto& [name, apply] : preset) {
      if (vm[name].defaulted()) {
        apply();
        preset_names.insert(name);
      }
    }
  } else {
    if (!IsReadableFile(o.mf.train_path)) {
      return Fail("--train " + o.mf.train_path + ": no such readable file");
    }
    if (!o.mf.test_path.empty() && !IsReadableFile(o.mf.test_path)) {
      return Fail("--test " + o.mf.test_path + ": no such readable file");
    }
  }
  if (!o.mf.valid_path.empty() && !IsReadableFile(o.mf.valid_path)) {
    return Fail("--valid " + o.mf.valid_path + ": no such readable file");
  }
  if (Status valid = CheckValidationFlags(o); !valid.ok()) return Fail(valid.message());
  if (!o.mf.metrics_out.empty()) {
    Status output = safe_output::CheckOutputFile(o.mf.metrics_out, "--metrics-out",
                                                 {{"--train", o.mf.train_path},
                                                  {"--test", o.mf.test_path},
                                                  {"--valid", o.mf.valid_path},
                                                  {"--config", o.config_path}});
    if (!output.ok()) return Fail(output.message());
  }
  // MF on a GPU: a batch that fills the device unless the user or the demo preset chose one.
  std::map<std::string, std::string> device_defaults;
  if (!o.ctr && o.mf.device == kernels::Device::kCuda && vm["batch-size"].defaulted() &&
      !preset_names.count("batch-size")) {
    o.mf.batch_size = worker::kMfCudaDefaultBatchSize;
    device_defaults["batch-size"] = std::to_string(o.mf.batch_size);
  }
  // What the user left out is chosen for the data's size, on every device alike (a checkpoint
  // moves between CUDA and CPU jobs with the same flags), but for MF's CUDA batch.
  std::map<std::string, std::string> data_defaults;
  if (!o.embedded_default) {
    auto given = [&](const std::string& flag) {
      return !vm[flag].defaulted() || device_defaults.count(flag) > 0;
    };
    auto line = o.ctr ? ApplyCtrAutoDefaults(given, &o, &data_defaults)
                      : ApplyMfAutoDefaults(given, &o, &data_defaults);
    if (!line.ok()) return Fail(line.status().message());
    o.defaults_line = *line;
  }
  if (o.mf.early_stop > 0 && o.mf.valid_path.empty() && o.mf.valid_fraction == 0) {
    return Fail(std::string("--early-stop needs validation data: --valid FILE or "
                            "--valid-fraction F") +
                (vm["early-stop"].defaulted() ? " (early stopping was chosen for the data's size; "
                                                "--early-stop 0 trains a fixed number of epochs)"
                                              : ""));
  }
  if (o.ctr) {
    ctr.train_path = o.mf.train_path;
    ctr.test_path = o.mf.test_path;
    ctr.valid_path = o.mf.valid_path;
    ctr.valid_fraction = o.mf.valid_fraction;
    ctr.early_stop = o.mf.early_stop;
    ctr.read.skip_bad_lines = o.mf.skip_bad_lines;
    ctr.read.num_threads = o.mf.reader_threads;
    ctr.epochs = o.mf.epochs;
    ctr.batch_size = o.mf.batch_size;
    ctr.seed = ctr.model.seed = seed;
    ctr.metrics_out = o.mf.metrics_out;
    ctr.timeout = o.mf.timeout;
  }
  o.summary = Summarize(vm, preset_names, device_defaults, data_defaults);
  return outcome;
}

ParseOutcome ParseGenRatingsOptions(const std::vector<std::string>& args,
                                    worker::RatingGenOptions* options, std::string* out_dir) {
  worker::RatingGenOptions& o = *options;
  po::options_description desc("tessera gen ratings options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value<std::string>(), "read options from an INI file; flags override it")
    ("users", po::value<int64_t>(&o.users)->default_value(o.users), "number of users")
    ("items", po::value<int64_t>(&o.items)->default_value(o.items), "number of items")
    ("ratings", po::value<int64_t>(&o.ratings)->default_value(o.ratings), "number of ratings (train + test)")
    ("rank", po::value<int>(&o.rank)->default_value(o.rank), "rank of the planted factors")
    ("noise", po::value<double>(&o.noise)->default_value(o.noise), "std-dev σ of the rating noise")
    ("seed", po::value<uint64_t>(&o.seed)->default_value(o.seed), "random seed")
    ("test-fraction", po::value<double>(&o.test_fraction)->default_value(o.test_fraction), "share of ratings written to test.txt")
    ("user-zipf", po::value<double>(&o.user_zipf)->default_value(o.user_zipf), "Zipf exponent of user activity")
    ("item-zipf", po::value<double>(&o.item_zipf)->default_value(o.item_zipf), "Zipf exponent of item popularity")
    ("out", po::value<std::string>(out_dir)->required(), "output directory");
  // clang-format on
  po::variables_map vm;
  ParseOutcome outcome =
      ParseWith(args, desc, "usage: tessera gen ratings --out DIR [options]", &vm);
  if (!outcome.run) return outcome;
  Status valid = worker::ValidateRatingGenOptions(o);
  if (!valid.ok()) return Fail(valid.message());
  return outcome;
}

ParseOutcome ParseGenCriteoOptions(const std::vector<std::string>& args,
                                   worker::CriteoGenOptions* options, std::string* out_dir) {
  worker::CriteoGenOptions& o = *options;
  po::options_description desc("tessera gen criteo options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value<std::string>(), "read options from an INI file; flags override it")
    ("rows", po::value<int64_t>(&o.rows)->default_value(o.rows), "rows (train + test)")
    ("seed", po::value<uint64_t>(&o.seed)->default_value(o.seed), "random seed")
    ("test-fraction", po::value<double>(&o.test_fraction)->default_value(o.test_fraction), "share of rows written to test.tsv")
    ("target-ctr", po::value<double>(&o.target_ctr)->default_value(o.target_ctr), "mean click probability")
    ("signal-scale", po::value<double>(&o.signal_scale)->default_value(o.signal_scale), "strength of the planted effects (higher: easier)")
    ("vocab-scale", po::value<double>(&o.vocab_scale)->default_value(o.vocab_scale), "multiplies every field's vocabulary size")
    ("out", po::value<std::string>(out_dir)->required(), "output directory");
  // clang-format on
  po::variables_map vm;
  ParseOutcome outcome =
      ParseWith(args, desc, "usage: tessera gen criteo --out DIR [options]", &vm);
  if (!outcome.run) return outcome;
  Status valid = worker::ValidateCriteoGenOptions(o);
  if (!valid.ok()) return Fail(valid.message());
  return outcome;
}

ParseOutcome ParseConvertOptions(const std::vector<std::string>& args, worker::CtrReadOptions* read,
                                 std::string* input, std::string* output) {
  std::string format = "auto";
  po::options_description desc("tessera convert options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value<std::string>(), "read options from an INI file; flags override it")
    ("input", po::value<std::string>(input)->required(), "CTR text file (criteo, libsvm, libffm)")
    ("output", po::value<std::string>(output)->required(), "binary cache to write")
    ("format", po::value<std::string>(&format)->default_value("auto"), "input format: auto|criteo|libsvm|libffm")
    ("hash-seed", po::value<uint64_t>(&read->hash_seed)->default_value(0), "seed of the (field, value) -> key hash (training must use the same)")
    ("bucketize-ints", po::bool_switch(&read->bucketize_integers), "criteo: integer features also as bucketised categorical fields")
    ("skip-bad-lines", po::bool_switch(&read->skip_bad_lines), "count and skip malformed lines instead of stopping")
    ("reader-threads", po::value<int>(&read->num_threads)->default_value(2), "parser threads");
  // clang-format on
  po::variables_map vm;
  ParseOutcome outcome =
      ParseWith(args, desc, "usage: tessera convert --input FILE --output CACHE [options]", &vm);
  if (!outcome.run) return outcome;
  auto parsed = worker::ParseCtrFormat(format);
  if (!parsed.ok() || *parsed == worker::CtrFormat::kCache) {
    return Fail("--format " + format + " is not one of auto|criteo|libsvm|libffm");
  }
  read->format = *parsed;
  if (!IsReadableFile(*input)) return Fail("--input " + *input + ": no such readable file");
  return outcome;
}

ParseOutcome ParseExportOptions(const std::vector<std::string>& args, ExportOptions* options) {
  std::string format = "npy";
  po::options_description desc("tessera export options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value<std::string>(), "read options from an INI file; flags override it")
    ("checkpoint", po::value<std::string>(&options->checkpoint)->required(), "checkpoint directory (DIR/step-N, or a checkpoint root: its latest)")
    ("out", po::value<std::string>(&options->out)->required(), "export directory (created)")
    ("format", po::value<std::string>(&format)->default_value(format), "npy (keys.npy + embeddings.npy per table) | text (key v1 v2 ... per line)");
  // clang-format on
  po::variables_map vm;
  ParseOutcome outcome = ParseWith(
      args, desc, "usage: tessera export --checkpoint DIR/step-N --out EXPORT [options]", &vm);
  if (!outcome.run) return outcome;
  if (format == "npy") {
    options->format = ExportFormat::kNpy;
  } else if (format == "text") {
    options->format = ExportFormat::kText;
  } else {
    return Fail("--format " + format + " is not one of npy|text");
  }
  return outcome;
}

ParseOutcome ParseRecommendOptions(const std::vector<std::string>& args,
                                   RecommendOptions* options) {
  po::options_description desc("tessera recommend options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value<std::string>(), "read options from an INI file; flags override it")
    ("export", po::value<std::string>(&options->export_dir)->required(), "an MF export (tessera export --format npy)")
    ("user", po::value<std::string>(&options->user), "the user to recommend items to")
    ("users", po::value<std::string>(&options->users_file), "a file of user ids, one per line")
    ("k", po::value<int>(&options->k)->default_value(10), "items per user")
    ("exclude-seen", po::value<std::string>(&options->exclude_seen), "a ratings file: items a user rated there are not recommended");
  // clang-format on
  po::variables_map vm;
  ParseOutcome outcome = ParseWith(
      args, desc, "usage: tessera recommend --export EXPORT (--user ID | --users FILE) [options]",
      &vm);
  if (!outcome.run) return outcome;
  if (options->user.empty() && options->users_file.empty()) return Fail("give --user or --users");
  if (options->k < 1) return Fail("--k must be at least 1");
  if (!options->exclude_seen.empty() && !IsReadableFile(options->exclude_seen)) {
    return Fail("--exclude-seen " + options->exclude_seen + ": no such readable file");
  }
  if (!options->users_file.empty() && !IsReadableFile(options->users_file)) {
    return Fail("--users " + options->users_file + ": no such readable file");
  }
  return outcome;
}

ParseOutcome ParseKeygenOptions(const std::vector<std::string>& args, std::string* out) {
  po::options_description desc("tessera keygen options");
  // clang-format off
  desc.add_options()
    ("help,h", "print this help and exit")
    ("out", po::value<std::string>(out)->required(), "the key file to create (mode 0600; an existing file is never replaced)");
  // clang-format on
  po::variables_map vm;
  return ParseWith(args, desc, "usage: tessera keygen --out FILE", &vm);
}

}  // namespace tessera::launch

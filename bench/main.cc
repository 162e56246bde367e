// tessera_bench: the C++ half of bench/run_mf_bench.sh. Prints tables; with --json FILE also
// appends one JSON line per figure for the script's summary.
//
//   tessera_bench [options] PART...      PART: read | net | memory | kernels | blas | checkpoint |
//                                        gpu | ceiling | ceiling-grid | all (all but checkpoint,
//                                        gpu and the ceiling parts)
//
// Options (all optional): --json FILE, --train FILE (for read), --reps N, --seconds S,
// --dim N --keys N --depth N --key-space N --server-threads N --only PHASE,... (net),
// --memory-rows N,N,... --memory-dims N,N,... (memory), --kernel-dims N,N --batch N (kernels),
// --mlp-input N --mlp N,N,.. --mlp-batch N (blas), --ckpt-rows N --ckpt-dim N --ckpt-servers N
// --ckpt-dir DIR (checkpoint), --gpu-shrink N (gpu: sizes / N; default 64 on the emulated device),
// --train F --test F --dim N --epochs N --lr X --l2 X --l2-bias X --init-std X --threads N
// --blocks N --seed N --sort 0|1 (ceiling), and --grid-lr X,.. --grid-l2 X,.. (ceiling-grid).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench/benches.h"
#include "core/message.h"

namespace {

template <typename T>
std::vector<T> ParseList(const std::string& text) {
  std::vector<T> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(static_cast<T>(std::stoll(item)));
  return out;
}

std::vector<float> ParseFloats(const std::string& text) {
  std::vector<float> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stof(item));
  return out;
}

int Usage() {
  std::fprintf(
      stderr,
      "usage: tessera_bench [--json FILE] [--train FILE] [--reps N] [--seconds S] "
      "[--dim N] [--keys N] [--depth N] [--key-space N] [--server-threads N] [--only P,..] "
      "[--memory-rows N,..] [--memory-dims N,..] [--kernel-dims N,..] [--batch N] "
      "[--mlp-input N] [--mlp N,..] [--mlp-batch N] [--ckpt-rows N] [--ckpt-dim N] "
      "[--ckpt-servers N] [--ckpt-dir DIR] [--gpu-shrink N] [--test FILE] [--epochs N] "
      "[--lr X] [--l2 X] [--l2-bias X] [--init-std X] [--threads N] [--blocks N] [--seed N] "
      "[--sort 0|1] [--grid-lr X,..] [--grid-l2 X,..] "
      "read|net|memory|kernels|blas|checkpoint|gpu|ceiling|ceiling-grid|all ...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tessera::bench;
  tessera::KeepLargeBuffersInHeap();  // as `tessera` does: the PS servers here are its code
  std::map<std::string, std::string> flags;
  std::vector<std::string> parts;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0) {
      const size_t eq = arg.find('=');
      if (eq != std::string::npos) {
        flags[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
      } else if (i + 1 < argc) {
        flags[arg.substr(2)] = argv[++i];
      } else {
        return Usage();
      }
    } else {
      parts.push_back(arg);
    }
  }
  if (parts.empty()) return Usage();
  auto flag = [&](const std::string& name, const std::string& fallback) {
    auto it = flags.find(name);
    if (it == flags.end()) return fallback;
    std::string value = it->second;
    flags.erase(it);
    return value;
  };
  try {
    JsonLines json(flag("json", ""));
    const int reps = std::stoi(flag("reps", "3"));
    const double seconds = std::stod(flag("seconds", "2"));
    ReadBenchOptions read;
    read.path = flag("train", "");
    read.reps = reps;
    NetBenchOptions net;
    net.reps = reps;
    net.seconds = seconds;
    const std::string dim = flag("dim", "");  // net and ceiling
    if (!dim.empty()) net.dim = std::stoi(dim);
    net.keys = std::stoi(flag("keys", std::to_string(net.keys)));
    net.depth = std::stoi(flag("depth", std::to_string(net.depth)));
    net.key_space = std::stoll(flag("key-space", std::to_string(net.key_space)));
    net.server_threads = std::stoi(flag("server-threads", std::to_string(net.server_threads)));
    net.only = flag("only", "");
    MemoryBenchOptions memory;
    const std::string rows = flag("memory-rows", "");
    if (!rows.empty()) memory.rows = ParseList<int64_t>(rows);
    const std::string dims = flag("memory-dims", "");
    if (!dims.empty()) memory.dims = ParseList<int>(dims);
    KernelBenchOptions kernels;
    kernels.reps = reps;
    kernels.seconds = seconds / 2;
    const std::string kdims = flag("kernel-dims", "");
    if (!kdims.empty()) kernels.dims = ParseList<int>(kdims);
    kernels.batch = std::stoi(flag("batch", std::to_string(kernels.batch)));
    BlasBenchOptions blas;
    blas.reps = reps;
    blas.seconds = seconds / 2;
    blas.input = std::stoi(flag("mlp-input", std::to_string(blas.input)));
    const std::string mlp = flag("mlp", "");
    if (!mlp.empty()) blas.hidden = ParseList<int>(mlp);
    blas.batch = std::stoi(flag("mlp-batch", std::to_string(blas.batch)));
    CheckpointBenchOptions ckpt;
    ckpt.rows = std::stoll(flag("ckpt-rows", std::to_string(ckpt.rows)));
    ckpt.dim = std::stoi(flag("ckpt-dim", std::to_string(ckpt.dim)));
    ckpt.servers = std::stoi(flag("ckpt-servers", std::to_string(ckpt.servers)));
    const char* tmpdir = std::getenv("TMPDIR");
    ckpt.dir = flag("ckpt-dir", tmpdir && *tmpdir ? tmpdir : "/tmp");
    GpuBenchOptions gpu;
    gpu.reps = reps;
    gpu.seconds = seconds / 8;
    gpu.shrink = std::stoi(flag("gpu-shrink", "0"));
    CeilingBenchOptions ceiling;
    ceiling.train = read.path;
    ceiling.test = flag("test", "");
    if (!dim.empty()) ceiling.fpsgd.dim = std::stoi(dim);
    ceiling.epochs = std::stoi(flag("epochs", std::to_string(ceiling.epochs)));
    ceiling.fpsgd.lr = std::stof(flag("lr", std::to_string(ceiling.fpsgd.lr)));
    ceiling.fpsgd.l2 = std::stof(flag("l2", std::to_string(ceiling.fpsgd.l2)));
    ceiling.fpsgd.l2_bias = std::stof(flag("l2-bias", std::to_string(ceiling.fpsgd.l2_bias)));
    ceiling.fpsgd.init_std = std::stof(flag("init-std", std::to_string(ceiling.fpsgd.init_std)));
    ceiling.fpsgd.threads = std::stoi(flag("threads", std::to_string(ceiling.fpsgd.threads)));
    ceiling.fpsgd.blocks = std::stoi(flag("blocks", std::to_string(ceiling.fpsgd.blocks)));
    ceiling.fpsgd.seed = std::stoull(flag("seed", std::to_string(ceiling.fpsgd.seed)));
    ceiling.fpsgd.sort_blocks = std::stoi(flag("sort", "1")) != 0;
    const std::string grid_lr = flag("grid-lr", "");
    if (!grid_lr.empty()) ceiling.grid_lr = ParseFloats(grid_lr);
    const std::string grid_l2 = flag("grid-l2", "");
    if (!grid_l2.empty()) ceiling.grid_l2 = ParseFloats(grid_l2);
    if (!flags.empty()) {
      std::fprintf(stderr, "unknown option --%s\n", flags.begin()->first.c_str());
      return Usage();
    }
    bool ok = true;
    for (const std::string& part : parts) {
      const bool all = part == "all";
      if (part == "read" || all) {
        if (read.path.empty()) {
          std::fprintf(stderr, "read needs --train FILE\n");
          return 2;
        }
        ok &= RunReadBench(read, &json);
      }
      // The net part forks its servers; it runs before anything leaves threads or big tables
      // behind in this process.
      if (part == "net" || all) ok &= RunNetBench(net, &json);
      if (part == "memory" || all) ok &= RunMemoryBench(memory, &json);
      if (part == "kernels" || all) ok &= RunKernelBench(kernels, &json);
      if (part == "blas" || all) ok &= RunBlasBench(blas, &json);
      if (part == "checkpoint") ok &= RunCheckpointBench(ckpt, &json);
      if (part == "gpu") ok &= RunGpuBench(gpu, &json);
      if (part == "ceiling" || part == "ceiling-grid") {
        ceiling.grid = part == "ceiling-grid";
        ok &= RunCeilingBench(ceiling, &json);
      }
      if (!all && part != "read" && part != "net" && part != "memory" && part != "kernels" &&
          part != "blas" && part != "checkpoint" && part != "gpu" && part != "ceiling" &&
          part != "ceiling-grid") {
        return Usage();
      }
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bad option value: %s\n", e.what());
    return Usage();
  }
}

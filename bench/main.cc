// tessera_bench: the C++ half of bench/run_mf_bench.sh. Prints tables; with --json FILE also
// appends one JSON line per figure for the script's summary.
//
//   tessera_bench [options] PART...      PART: read | net | memory | kernels | blas | checkpoint |
//                                        gpu | all (all but checkpoint and gpu)
//
// Options (all optional): --json FILE, --train FILE (for read), --reps N, --seconds S,
// --dim N --keys N --depth N --key-space N --server-threads N --only PHASE,... (net),
// --memory-rows N,N,... --memory-dims N,N,... (memory), --kernel-dims N,N --batch N (kernels),
// --mlp-input N --mlp N,N,.. --mlp-batch N (blas), --ckpt-rows N --ckpt-dim N --ckpt-servers N
// --ckpt-dir DIR (checkpoint), --gpu-shrink N (gpu: sizes / N; default 64 on the emulated device).
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

int Usage() {
  std::fprintf(
      stderr,
      "usage: tessera_bench [--json FILE] [--train FILE] [--reps N] [--seconds S] "
      "[--dim N] [--keys N] [--depth N] [--key-space N] [--server-threads N] [--only P,..] "
      "[--memory-rows N,..] [--memory-dims N,..] [--kernel-dims N,..] [--batch N] "
      "[--mlp-input N] [--mlp N,..] [--mlp-batch N] [--ckpt-rows N] [--ckpt-dim N] "
      "[--ckpt-servers N] [--ckpt-dir DIR] [--gpu-shrink N] "
      "read|net|memory|kernels|blas|checkpoint|gpu|all ...\n");
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
    net.dim = std::stoi(flag("dim", std::to_string(net.dim)));
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
      if (!all && part != "read" && part != "net" && part != "memory" && part != "kernels" &&
          part != "blas" && part != "checkpoint" && part != "gpu") {
        return Usage();
      }
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bad option value: %s\n", e.what());
    return Usage();
  }
}

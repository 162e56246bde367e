// The parts of tessera_bench. Each prints a table to stdout and, given a JsonLines, one result
// line per measured figure. Figures are rates over a fixed amount of work (read) or a fixed time
// (net), repeated `reps` times; the median is quoted, the best is printed next to it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/fpsgd.h"

namespace tessera::bench {

struct ReadBenchOptions {
  std::string path;  // a LIBMF text file (tessera gen ratings ... train.txt)
  std::vector<int> threads = {1, 2};
  int reps = 3;
};
// ReadRatings lines/s (and MB/s) per thread count, after one untimed read that brings the file
// into the page cache. Returns false on a read error.
bool RunReadBench(const ReadBenchOptions& o, JsonLines* json);

struct NetBenchOptions {
  int dim = 64;                 // floats per row
  int keys = 8192;              // unique keys per request
  int64_t key_space = 1 << 20;  // rows in the server's table (all created before measuring)
  int depth = 4;                // requests in flight
  double seconds = 2.0;         // per measurement
  int reps = 3;
  int server_threads = 1;  // shard threads of the Tessera server
  // Comma-separated subset of stream,raw_pull,ps_pull,shm_pull,curve_pull,raw_push,
  // raw_push_rounds,ps_push,shm_push,curve_push ("" = all):
  // for profiling one phase.
  std::string only;
};
// Raw ZeroMQ (DEALER -> ROUTER, request/reply shaped like a pull and a push, plus one-way
// streaming) next to a real tessera Server over ZmqTransport driven by PsClient; both servers
// are child processes on tcp://127.0.0.1, measured alternately.
bool RunNetBench(const NetBenchOptions& o, JsonLines* json);

struct MemoryBenchOptions {
  std::vector<int> dims = {33, 129};  // row weights: MF dim + bias
  std::vector<int64_t> rows = {100000, 838861, 1000000};
};
// EmbeddingTable resident bytes per row from /proc/self/statm deltas and MemoryBytes(), with
// Adagrad next to the budget 1.25 x (dim + state) x 4 bytes, then with row-wise Adagrad.
bool RunMemoryBench(const MemoryBenchOptions& o, JsonLines* json);

struct KernelBenchOptions {
  std::vector<int> dims = {32, 128};
  int batch = 16384;        // samples per MF batch
  int64_t users = 1000000;  // rows the batch's samples are drawn from (Zipf-free, uniform)
  int64_t items = 100000;
  double seconds = 1.0;
  int reps = 3;
};
// The compute pieces of one training step in isolation, single thread: MfBatchGradientCpu over
// a gathered batch, ApplySparseUpdateCpu (Adagrad) over rows scattered in an EmbeddingTable, and
// EmbeddingTable::FindBatch. Rates in samples/s or rows/s.
bool RunKernelBench(const KernelBenchOptions& o, JsonLines* json);

struct BlasBenchOptions {
  int input = 429;                            // 26 fields x dim 16 + 13 dense
  std::vector<int> hidden = {400, 400, 400};  // then one output
  int batch = 4096;
  double seconds = 1.0;
  int reps = 3;
};
// cblas_sgemm GFLOP/s for each of the MLP's products (forward, dW, dx per layer) and for the
// whole step, with the FLOPs per sample the run script turns into a ceiling on samples/s.
bool RunBlasBench(const BlasBenchOptions& o, JsonLines* json);

struct CheckpointBenchOptions {
  int64_t rows = 10000000;  // rows of the one table, over all servers
  int dim = 64;             // weights per row (+ as many Adagrad accumulators)
  int servers = 2;
  int server_threads = 1;
  std::string dir = "/tmp";  // where the checkpoint is written (removed afterwards)
};
// Checkpoint write (every server's shard threads in parallel, CRC-32, fsync) and restore (a new
// set of servers loading it) in GB/s, with real Server objects in this process.
bool RunCheckpointBench(const CheckpointBenchOptions& o, JsonLines* json);

struct GpuBenchOptions {
  int reps = 3;           // timed repetitions of each figure (median and best are printed)
  double seconds = 0.25;  // device time per repetition, about
  int mf_dim = 32;
  int mf_batch = 8192;           // samples per MF step (the --device cuda default)
  int ctr_batch = 4096;          // DeepFM: 26 fields of emb 16, 13 dense, MLP 400-400-400
  int64_t gather_batch = 65536;  // samples of the embedding kernels (26 fields x dim 16)
  // Sizes divided by this (at least 1): the emulated device runs kernels on the CPU, where the
  // full sizes would take minutes and the figures mean nothing anyway. 0: 64 when the device is
  // emulated, else 1.
  int shrink = 0;
};
// Per CUDA kernel (gather, gather backward, pool, pool backward, MF gradient, SGEMM through
// LinearForward, sparse Adagrad), timed with CUDA events: achieved GB/s or GFLOP/s and the
// fraction of the device's peak (formulas printed with the table). Then samples/s of one MF
// worker step (staged upload, gradient, download) and one DeepFM step (upload, embedding, FM,
// MLP forward and backward, download) on the device next to the same step on the CPU kernels
// in this process. Without a usable device: one line saying so, and true.
bool RunGpuBench(const GpuBenchOptions& o, JsonLines* json);

struct CeilingBenchOptions {
  std::string train, test;  // rating files (any format worker/data/rating_reader.h reads)
  FpsgdOptions fpsgd;       // dim, threads, blocks, lr, l2, l2_bias, init_std, seed
  int epochs = 10;
  bool grid = false;  // run the grid below instead of one curve
  std::vector<float> grid_lr = {0.02f, 0.05f, 0.1f};
  std::vector<float> grid_l2 = {0.01f, 0.02f, 0.05f};
};
// The MF ceiling (bench/fpsgd.h): load time, then per epoch updates/s, test RMSE and seconds
// since the load began; with grid, the best test RMSE of each (lr, l2) over `epochs` epochs and
// the best setting. Returns false on a load error.
bool RunCeilingBench(const CeilingBenchOptions& o, JsonLines* json);

#if TESSERA_WITH_CUDA
namespace internal {
bool RunGpuBenchOnDevice(const GpuBenchOptions& o, JsonLines* json);  // gpu_bench_cuda.cu
}  // namespace internal
#endif

}  // namespace tessera::bench

// The MF ceiling of issue 15: biased matrix factorisation trained the way the fastest
// single-machine trainers do it, as the yardstick Tessera's ratings/s is measured against.
//
// Method (written from the papers, not from LIBMF's code): FPSGD, Chin, Zhuang, Juan and Lin, "A
// Fast Parallel Stochastic Gradient Method for Matrix Factorization in Shared Memory Systems",
// ACM TIST 2015, with the per-row adaptive learning rate of Chin et al., "A Learning-rate
// Schedule for Stochastic Gradient Methods to Matrix Factorization", PAKDD 2015. User and item
// ids are mapped to dense indices through random permutations, the ratings are cut into a grid of
// B x B blocks (row band x column band), and threads take free blocks (neither band in use) from
// a BlockScheduler, so no two threads ever touch the same row and the rows need no locks. Each
// rating is one SGD step in place over dense float arrays.
//
// Model and loss are Tessera's MF model (worker/mf_model.h): r_hat = mu + b_u + b_i + p_u . q_i
// with mu the training mean, loss 0.5 (r - r_hat)^2 + 0.5 l2 (|p_u|^2 + |q_i|^2)
// + 0.5 l2_bias (b_u^2 + b_i^2) per rating. Each row keeps one accumulator G (starting at 1) of
// the mean over its factors of the squared gradient; a step uses eta = lr / sqrt(G) for the
// row's factors and bias, then adds the step's mean squared factor gradient to G.
//
// Threads: an FpsgdTrainer is used by one thread at a time; RunEpoch and TestRmse start
// options.threads std::threads and join them before returning. BlockScheduler is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/mutex.h"
#include "core/status.h"
#include "worker/data/rating_reader.h"

namespace tessera::bench {

struct FpsgdOptions {
  int dim = 32;             // factors per row, >= 1
  int threads = 2;          // training threads, >= 1
  int blocks = 0;           // B: the grid is B x B, >= 1; 0: 2 threads + 1 (see Blocks())
  float lr = 0.05f;         // base learning rate (eta_0 of the adaptive schedule), > 0
  float l2 = 0.02f;         // L2 on the factors, >= 0
  float l2_bias = 0.01f;    // L2 on the biases, >= 0
  float init_std = 0.1f;    // std of the initial factors (uniform, zero mean); >= 0
  uint64_t seed = 1;        // permutations, initial factors, block order
  bool sort_blocks = true;  // order each block's ratings by (user, item) for locality

  // The B used: `blocks`, or when 0 the default for `threads` (measured in docs/PERFORMANCE.md).
  int Blocks() const;
};

// InvalidArgument naming the first bad field.
Status ValidateFpsgdOptions(const FpsgdOptions& o);

// Hands out the blocks of a B x B grid to concurrent workers so that no two held blocks share a
// row band or a column band, each block exactly once per epoch. Among the free blocks it picks
// one whose bands have the most blocks left this epoch (so that the last blocks of an epoch do
// not all sit in one band and leave threads idle), ties broken at random.
//
// Thread-safe: any number of threads may call Acquire and Release concurrently.
class BlockScheduler {
 public:
  // REQUIRES: blocks >= 1. Starts with the first epoch open.
  BlockScheduler(int blocks, uint64_t seed);

  // A block (row band * B + column band) free of conflicts, waiting until one is free; -1 once
  // every block of this epoch has been handed out. REQUIRES: the caller eventually releases it.
  int Acquire();
  // Gives back a block from Acquire.
  void Release(int block);
  // Opens the next epoch. REQUIRES: every block of the epoch was acquired and released.
  void StartEpoch();

  int blocks() const { return blocks_; }
  // Times `block` has been handed out since construction.
  int64_t Count(int block) const;

 private:
  bool AnyCandidate() const TS_REQUIRES(mu_);

  const int blocks_;
  mutable Mutex mu_;
  CondVar changed_;
  std::mt19937_64 rng_ TS_GUARDED_BY(mu_);
  std::vector<char> row_busy_ TS_GUARDED_BY(mu_);
  std::vector<char> col_busy_ TS_GUARDED_BY(mu_);
  std::vector<char> done_ TS_GUARDED_BY(mu_);  // handed out this epoch
  std::vector<int> row_left_ TS_GUARDED_BY(mu_);
  std::vector<int> col_left_ TS_GUARDED_BY(mu_);
  std::vector<int64_t> count_ TS_GUARDED_BY(mu_);
  int left_ TS_GUARDED_BY(mu_) = 0;  // blocks not yet handed out this epoch
  int held_ TS_GUARDED_BY(mu_) = 0;
};

struct FpsgdEpochStats {
  int64_t updates = 0;  // ratings processed (one SGD step each)
  double seconds = 0;   // wall time of the epoch
  double updates_per_sec = 0;
  double idle_fraction = 0;  // of thread time spent waiting for a free block
  // CPU seconds of the training threads (CLOCK_THREAD_CPUTIME_ID), and updates / cpu_seconds x
  // threads: the rate had each thread had a core to itself (robust against other load on a
  // shared machine, where wall-clock rates swing by 2x).
  double cpu_seconds = 0;
  double updates_per_cpu_sec_x_threads = 0;
};

class FpsgdTrainer {
 public:
  // InvalidArgument on bad options.
  static StatusOr<std::unique_ptr<FpsgdTrainer>> Create(const FpsgdOptions& options);

  // Reads the files with Tessera's rating reader (any format it reads, auto-detected), maps ids
  // to dense indices and builds the grid. Test ids absent from training predict with their
  // unknown parts as 0. InvalidArgument for an empty training file; the reader's Status else.
  Status Load(const std::string& train_path, const std::string& test_path);
  // The same from arrays (tests). `test` may be empty.
  Status LoadData(const worker::RatingData& train, const worker::RatingData& test);

  // Re-initialises the model for `options` (another lr, l2, dim... on the same data).
  // InvalidArgument on bad options; the grid is rebuilt when blocks or threads change it.
  Status Reset(const FpsgdOptions& options);

  // One pass over every rating: every block once. REQUIRES: loaded.
  FpsgdEpochStats RunEpoch();
  // RMSE over the test ratings, predictions clipped to the training rating range (as
  // MfModel::AddEvalErrors). 0 without test ratings.
  double TestRmse() const;
  // RMSE over the training ratings, the same way.
  double TrainRmse() const;

  int64_t num_users() const { return num_users_; }
  int64_t num_items() const { return num_items_; }
  int64_t num_train() const { return static_cast<int64_t>(train_.size()); }
  int64_t num_test() const { return static_cast<int64_t>(test_.size()); }
  float global_mean() const { return mu_; }
  const FpsgdOptions& options() const { return options_; }
  const BlockScheduler& scheduler() const { return *scheduler_; }
  // Seconds of the last Load/LoadData and Reset: reading the files, mapping ids, building the
  // grid (grouping and sorting), initialising the rows.
  struct LoadSeconds {
    double read = 0, map = 0, grid = 0, init = 0;
  };
  const LoadSeconds& load_seconds() const { return load_seconds_; }

  // One rating in dense indices (user -1 / item -1: not in the training set).
  struct Entry {
    int32_t user;
    int32_t item;
    float rating;
  };

 private:
  explicit FpsgdTrainer(const FpsgdOptions& options) : options_(options) {}
  void BuildGrid();
  void InitModel();
  double Rmse(const std::vector<Entry>& set) const;

  FpsgdOptions options_;
  int64_t num_users_ = 0, num_items_ = 0;
  float mu_ = 0, min_rating_ = 0, max_rating_ = 0;
  std::vector<Entry> train_;          // grouped by block (block_start_)
  std::vector<int64_t> block_start_;  // B*B + 1 offsets into train_
  std::vector<Entry> test_;
  int grid_blocks_ = 0;  // B the grid was built for
  bool grid_sorted_ = false;
  // Rows of stride_ floats, 64-byte aligned: dim factors padded to a multiple of 8 with zeros,
  // then the bias, then the accumulator G.
  int stride_ = 0;
  struct FreeAligned {
    void operator()(float* p) const;
  };
  std::unique_ptr<float[], FreeAligned> users_, items_;
  std::unique_ptr<BlockScheduler> scheduler_;
  LoadSeconds load_seconds_;
};

}  // namespace tessera::bench

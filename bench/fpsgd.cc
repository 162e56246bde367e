// FPSGD (Chin et al., ACM TIST 2015) with per-row adaptive learning rates (Chin et al., PAKDD
// 2015) for Tessera's biased MF; see fpsgd.h for the method and the model.
#include "bench/fpsgd.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "core/logging.h"
#include "kernels/cpu_simd.h"
#include "kernels/random_math.h"

namespace tessera::bench {
namespace {

constexpr int kBlock = 8;                 // floats per SIMD block of a row (kernels/mf_cpu.cc)
constexpr int kRowAlignFloats = 16;       // rows start on 64-byte cache lines
constexpr int64_t kMaxDenseId = 1 << 27;  // raw ids below this are remapped through an array

double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int RoundUp(int value, int multiple) { return (value + multiple - 1) / multiple * multiple; }

struct StepParams {
  float mu, lr, l2, l2_bias, inv_dim;
};

// kBlock floats as one GCC vector: each row block is 32-byte aligned (rows are 64-byte aligned,
// the stride a multiple of 16 floats). Written with vector types because the plain loops over
// fixed blocks (kernels/mf_cpu.cc) came out scalar here once kDim unrolled them fully (perf
// annotate showed vfmadd231ss); may_alias: the rows are float arrays.
typedef float V8 __attribute__((vector_size(kBlock * sizeof(float)), may_alias));

[[gnu::always_inline]] inline float Sum(V8 v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

// One SGD step on the rating (p, q, r). p and q are rows: kDim (or dim8) factors, a multiple of
// kBlock, zero-padded (the padding's gradient is 0, so it stays 0), then bias, then G.
template <int kDim>
[[gnu::always_inline]] inline void Step(float* __restrict__ p, float* __restrict__ q, float r,
                                        const StepParams& c, int dim8) {
  const int d = kDim > 0 ? kDim : dim8;
  V8* __restrict__ pv = reinterpret_cast<V8*>(p);
  V8* __restrict__ qv = reinterpret_cast<V8*>(q);
  V8 partial = {};
  for (int j = 0; j < d / kBlock; ++j) partial += pv[j] * qv[j];
  const float err = r - (c.mu + p[d] + q[d] + Sum(partial));
  // eta = lr / sqrt(G) from G before this step (the PAKDD paper's schedule).
  const float eta_p = c.lr / std::sqrt(p[d + 1]);
  const float eta_q = c.lr / std::sqrt(q[d + 1]);
  V8 gp2 = {}, gq2 = {};
  for (int j = 0; j < d / kBlock; ++j) {
    const V8 pj = pv[j], qj = qv[j];
    const V8 gp = c.l2 * pj - err * qj;  // d loss / d p
    const V8 gq = c.l2 * qj - err * pj;
    pv[j] = pj - eta_p * gp;
    qv[j] = qj - eta_q * gq;
    gp2 += gp * gp;
    gq2 += gq * gq;
  }
  p[d] -= eta_p * (c.l2_bias * p[d] - err);
  q[d] -= eta_q * (c.l2_bias * q[d] - err);
  p[d + 1] += Sum(gp2) * c.inv_dim;
  q[d + 1] += Sum(gq2) * c.inv_dim;
}

using Entry = FpsgdTrainer::Entry;

// Rows of the rating kAhead ratings ahead are fetched while this one computes: item rows are
// random within the block's column band, user rows nearly sequential once a block is sorted.
template <int kDim>
[[gnu::always_inline]] inline void ProcessBlockT(const Entry* entries, int64_t n, float* users,
                                                 float* items, int stride, const StepParams& c,
                                                 int dim8) {
  constexpr int64_t kAhead = 4;
  const int lines = (stride * 4 + 63) / 64;
  for (int64_t e = 0; e < n; ++e) {
    if (e + kAhead < n) {
      const char* pu =
          reinterpret_cast<const char*>(users + int64_t{entries[e + kAhead].user} * stride);
      const char* qi =
          reinterpret_cast<const char*>(items + int64_t{entries[e + kAhead].item} * stride);
      for (int l = 0; l < lines; ++l) {
        __builtin_prefetch(pu + 64 * l, 1);
        __builtin_prefetch(qi + 64 * l, 1);
      }
    }
    Step<kDim>(users + int64_t{entries[e].user} * stride, items + int64_t{entries[e].item} * stride,
               entries[e].rating, c, dim8);
  }
}

// One clone set per common width (fixed trip counts unroll fully) and one for any width.
[[gnu::noinline, TS_WIDE_SIMD]] void ProcessBlock32(const Entry* entries, int64_t n, float* users,
                                                    float* items, int stride, const StepParams& c,
                                                    int dim8) {
  ProcessBlockT<32>(entries, n, users, items, stride, c, dim8);
}
[[gnu::noinline, TS_WIDE_SIMD]] void ProcessBlock64(const Entry* entries, int64_t n, float* users,
                                                    float* items, int stride, const StepParams& c,
                                                    int dim8) {
  ProcessBlockT<64>(entries, n, users, items, stride, c, dim8);
}
[[gnu::noinline, TS_WIDE_SIMD]] void ProcessBlock128(const Entry* entries, int64_t n, float* users,
                                                     float* items, int stride, const StepParams& c,
                                                     int dim8) {
  ProcessBlockT<128>(entries, n, users, items, stride, c, dim8);
}
[[gnu::noinline, TS_WIDE_SIMD]] void ProcessBlockAny(const Entry* entries, int64_t n, float* users,
                                                     float* items, int stride, const StepParams& c,
                                                     int dim8) {
  ProcessBlockT<0>(entries, n, users, items, stride, c, dim8);
}

using ProcessFn = void (*)(const Entry*, int64_t, float*, float*, int, const StepParams&, int);

ProcessFn PickProcess(int dim8) {
  switch (dim8) {
    case 32:
      return ProcessBlock32;
    case 64:
      return ProcessBlock64;
    case 128:
      return ProcessBlock128;
    default:
      return ProcessBlockAny;
  }
}

// Runs body(t) on `threads` threads (the caller's among them) and joins them.
template <typename Body>
void RunOnThreads(int threads, const Body& body) {
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  body(0);
  for (std::thread& th : pool) th.join();
}

// Dense indices for raw ids: a random permutation of 0..n-1 over the distinct ids (FPSGD's
// shuffle, so that the bands of the grid hold balanced shares of the ratings).
class IdMap {
 public:
  void Build(const std::vector<uint64_t>& ids, std::mt19937_64* rng) {
    uint64_t max_id = 0;
    for (uint64_t id : ids) max_id = std::max(max_id, id);
    dense_ = max_id < static_cast<uint64_t>(kMaxDenseId);
    std::vector<uint64_t> distinct;
    if (dense_) {
      table_.assign(max_id + 1, -1);
      for (uint64_t id : ids) table_[id] = 0;
      for (uint64_t id = 0; id <= max_id; ++id) {
        if (table_[id] == 0) distinct.push_back(id);
      }
    } else {
      for (uint64_t id : ids) {
        if (map_.emplace(id, 0).second) distinct.push_back(id);
      }
    }
    std::vector<int32_t> perm(distinct.size());
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), *rng);
    for (size_t k = 0; k < distinct.size(); ++k) {
      if (dense_) {
        table_[distinct[k]] = perm[k];
      } else {
        map_[distinct[k]] = perm[k];
      }
    }
    size_ = static_cast<int64_t>(distinct.size());
  }
  // -1 for an id not in the set.
  int32_t Find(uint64_t id) const {
    if (dense_) return id < table_.size() ? table_[id] : -1;
    auto it = map_.find(id);
    return it == map_.end() ? -1 : it->second;
  }
  int64_t size() const { return size_; }

 private:
  bool dense_ = true;
  std::vector<int32_t> table_;
  std::unordered_map<uint64_t, int32_t> map_;
  int64_t size_ = 0;
};

}  // namespace

int FpsgdOptions::Blocks() const {
  if (blocks > 0) return blocks;
  // FPSGD's fewest: a thread finishing a block finds a free one while the others hold theirs.
  // Fewer, bigger blocks keep more of a user's ratings consecutive once sorted; measured on 2
  // threads (docs/PERFORMANCE.md), per CPU second at dim 32: B=5 90M updates/s, 6 80M, 8 68M,
  // 16 48M (dim 128: 39M, 35M, 34M, 23M).
  return 2 * threads + 1;
}

Status ValidateFpsgdOptions(const FpsgdOptions& o) {
  auto bad = [](const std::string& what) { return Status::InvalidArgument("fpsgd: " + what); };
  if (o.dim <= 0 || o.dim > 4096) return bad("dim " + std::to_string(o.dim) + " not in [1, 4096]");
  if (o.threads <= 0 || o.threads > 1024) {
    return bad("threads " + std::to_string(o.threads) + " not in [1, 1024]");
  }
  if (o.blocks < 0 || o.blocks > 4096) {
    return bad("blocks " + std::to_string(o.blocks) + " not in [1, 4096] (0: default)");
  }
  if (!(o.lr > 0) || !std::isfinite(o.lr)) return bad("lr must be finite and > 0");
  if (!(o.l2 >= 0) || !std::isfinite(o.l2)) return bad("l2 must be finite and >= 0");
  if (!(o.l2_bias >= 0) || !std::isfinite(o.l2_bias)) {
    return bad("l2_bias must be finite and >= 0");
  }
  if (!(o.init_std >= 0) || !std::isfinite(o.init_std)) {
    return bad("init_std must be finite and >= 0");
  }
  return OkStatus();
}

// ---- BlockScheduler ----

BlockScheduler::BlockScheduler(int blocks, uint64_t seed)
    : blocks_(blocks),
      rng_(seed),
      row_busy_(blocks),
      col_busy_(blocks),
      done_(static_cast<size_t>(blocks) * blocks),
      row_left_(blocks),
      col_left_(blocks),
      count_(static_cast<size_t>(blocks) * blocks) {
  TS_CHECK(blocks >= 1) << "BlockScheduler needs >= 1 block";
  MutexLock lock(&mu_);
  std::fill(row_left_.begin(), row_left_.end(), blocks_);
  std::fill(col_left_.begin(), col_left_.end(), blocks_);
  left_ = blocks_ * blocks_;
}

bool BlockScheduler::AnyCandidate() const {
  for (int r = 0; r < blocks_; ++r) {
    if (row_busy_[r] || row_left_[r] == 0) continue;
    for (int c = 0; c < blocks_; ++c) {
      if (!col_busy_[c] && !done_[r * blocks_ + c]) return true;
    }
  }
  return false;
}

int BlockScheduler::Acquire() {
  MutexLock lock(&mu_);
  changed_.Wait(&mu_, [&]() TS_REQUIRES(mu_) { return left_ == 0 || AnyCandidate(); });
  if (left_ == 0) return -1;
  int best = -1, best_score = -1, ties = 0;
  for (int r = 0; r < blocks_; ++r) {
    if (row_busy_[r]) continue;
    for (int c = 0; c < blocks_; ++c) {
      const int b = r * blocks_ + c;
      if (col_busy_[c] || done_[b]) continue;
      const int score = row_left_[r] + col_left_[c];
      if (score > best_score) {
        best = b;
        best_score = score;
        ties = 1;
      } else if (score == best_score && rng_() % ++ties == 0) {
        best = b;  // reservoir sampling: each tie equally likely
      }
    }
  }
  const int r = best / blocks_, c = best % blocks_;
  row_busy_[r] = col_busy_[c] = 1;
  done_[best] = 1;
  --row_left_[r];
  --col_left_[c];
  --left_;
  ++held_;
  ++count_[best];
  return best;
}

void BlockScheduler::Release(int block) {
  MutexLock lock(&mu_);
  TS_CHECK(block >= 0 && block < blocks_ * blocks_) << "bad block " << block;
  const int r = block / blocks_, c = block % blocks_;
  TS_CHECK(row_busy_[r] && col_busy_[c]) << "block " << block << " released but not held";
  row_busy_[r] = col_busy_[c] = 0;
  --held_;
  changed_.SignalAll();
}

void BlockScheduler::StartEpoch() {
  MutexLock lock(&mu_);
  TS_CHECK(left_ == 0 && held_ == 0) << "StartEpoch with blocks left or held";
  std::fill(done_.begin(), done_.end(), 0);
  std::fill(row_left_.begin(), row_left_.end(), blocks_);
  std::fill(col_left_.begin(), col_left_.end(), blocks_);
  left_ = blocks_ * blocks_;
}

int64_t BlockScheduler::Count(int block) const {
  MutexLock lock(&mu_);
  return count_[block];
}

// ---- FpsgdTrainer ----

void FpsgdTrainer::FreeAligned::operator()(float* p) const { std::free(p); }

StatusOr<std::unique_ptr<FpsgdTrainer>> FpsgdTrainer::Create(const FpsgdOptions& options) {
  TS_RETURN_IF_ERROR(ValidateFpsgdOptions(options));
  return std::unique_ptr<FpsgdTrainer>(new FpsgdTrainer(options));
}

Status FpsgdTrainer::Load(const std::string& train_path, const std::string& test_path) {
  const auto start = std::chrono::steady_clock::now();
  worker::RatingReadOptions read;
  read.num_threads = std::max(1, options_.threads);
  TS_ASSIGN_OR_RETURN(worker::RatingReadResult train, worker::ReadRatings(train_path, read));
  if (train.data.size() == 0) {
    return Status::InvalidArgument("fpsgd: training file " + train_path + " has no ratings");
  }
  worker::RatingReadResult test;
  if (!test_path.empty()) {
    TS_ASSIGN_OR_RETURN(test, worker::ReadRatings(test_path, read));
  }
  const double read_seconds = SecondsSince(start);
  TS_RETURN_IF_ERROR(LoadData(train.data, test.data));
  load_seconds_.read = read_seconds;
  return OkStatus();
}

Status FpsgdTrainer::LoadData(const worker::RatingData& train, const worker::RatingData& test) {
  if (train.size() == 0) return Status::InvalidArgument("fpsgd: no training ratings");
  if (train.size() >= (size_t{1} << 40)) return Status::InvalidArgument("fpsgd: too many ratings");
  const auto start = std::chrono::steady_clock::now();
  load_seconds_ = LoadSeconds();
  std::mt19937_64 rng(options_.seed);
  IdMap users, items;
  users.Build(train.users, &rng);
  items.Build(train.items, &rng);
  if (users.size() >= (int64_t{1} << 31) || items.size() >= (int64_t{1} << 31)) {
    return Status::InvalidArgument("fpsgd: more than 2^31 users or items");
  }
  num_users_ = users.size();
  num_items_ = items.size();
  train_.resize(train.size());
  double sum = 0;
  min_rating_ = max_rating_ = train.ratings[0];
  for (size_t k = 0; k < train.size(); ++k) {
    const float r = train.ratings[k];
    train_[k] = {users.Find(train.users[k]), items.Find(train.items[k]), r};
    sum += r;
    min_rating_ = std::min(min_rating_, r);
    max_rating_ = std::max(max_rating_, r);
  }
  mu_ = static_cast<float>(sum / static_cast<double>(train.size()));
  test_.resize(test.size());
  for (size_t k = 0; k < test.size(); ++k) {
    test_[k] = {users.Find(test.users[k]), items.Find(test.items[k]), test.ratings[k]};
  }
  grid_blocks_ = 0;
  load_seconds_.map = SecondsSince(start);
  return Reset(options_);
}

void FpsgdTrainer::BuildGrid() {
  const int b = options_.Blocks();
  const size_t cells = static_cast<size_t>(b) * b;
  auto cell = [&](const Entry& e) {
    return static_cast<size_t>(int64_t{e.user} * b / num_users_) * b +
           static_cast<size_t>(int64_t{e.item} * b / num_items_);
  };
  // Counting sort by block. train_ may already be grouped for another B: any order will do.
  std::vector<int64_t> start(cells + 1, 0);
  for (const Entry& e : train_) ++start[cell(e) + 1];
  for (size_t k = 0; k < cells; ++k) start[k + 1] += start[k];
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  std::vector<Entry> grouped(train_.size());
  for (const Entry& e : train_) grouped[next[cell(e)]++] = e;
  train_.swap(grouped);
  block_start_.swap(start);
  // Within a block: by user, then item. A user's consecutive ratings reuse its row from L1 and
  // the user rows are visited in increasing address order (the hardware prefetcher follows);
  // items stay random within the band (measured in docs/PERFORMANCE.md against file order).
  if (options_.sort_blocks) {
    std::atomic<size_t> next_cell{0};
    RunOnThreads(options_.threads, [&](int) {
      for (size_t c; (c = next_cell.fetch_add(1)) < cells;) {
        std::sort(train_.begin() + block_start_[c], train_.begin() + block_start_[c + 1],
                  [](const Entry& x, const Entry& y) {
                    return x.user != y.user ? x.user < y.user : x.item < y.item;
                  });
      }
    });
  } else {
    // File order is the generator's order; shuffle within blocks for plain random order.
    std::mt19937_64 rng(options_.seed + 1);
    for (size_t c = 0; c < cells; ++c) {
      std::shuffle(train_.begin() + block_start_[c], train_.begin() + block_start_[c + 1], rng);
    }
  }
  grid_blocks_ = b;
  grid_sorted_ = options_.sort_blocks;
}

void FpsgdTrainer::InitModel() {
  const int dim8 = RoundUp(options_.dim, kBlock);
  stride_ = RoundUp(dim8 + 2, kRowAlignFloats);
  const float half_width = std::sqrt(3.0f) * options_.init_std;
  auto alloc = [&](int64_t rows, uint32_t table) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(rows, 1)) * stride_ * sizeof(float);
    float* data = static_cast<float*>(std::aligned_alloc(64, bytes));
    TS_CHECK(data != nullptr) << "fpsgd: out of memory for " << bytes << " bytes";
    std::unique_ptr<float[], FreeAligned> owned(data);
    std::atomic<int64_t> next{0};
    constexpr int64_t kChunk = 4096;
    RunOnThreads(options_.threads, [&](int) {
      for (int64_t begin; (begin = next.fetch_add(kChunk)) < rows;) {
        for (int64_t row = begin; row < std::min(rows, begin + kChunk); ++row) {
          float* w = data + row * stride_;
          const uint64_t stream = kernels::RowStream(options_.seed, table, row);
          for (int j = 0; j < stride_; ++j) w[j] = 0;
          // Uniform on [-a, a] with a = sqrt(3) init_std: Tessera's standard deviation
          // (--init-std), at a fraction of the cost of its normal draws (log and cos per value,
          // which made the load of dim 128 take twice that of dim 32).
          for (int j = 0; j < options_.dim; ++j) {
            const float u = kernels::CounterUniform(stream, static_cast<uint32_t>(j));
            w[j] = half_width * (2.0f * u - 1.0f);
          }
          w[dim8 + 1] = 1.0f;  // G starts at 1: the first steps use eta = lr
        }
      }
    });
    return owned;
  };
  users_ = alloc(num_users_, 0);
  items_ = alloc(num_items_, 1);
}

Status FpsgdTrainer::Reset(const FpsgdOptions& options) {
  TS_RETURN_IF_ERROR(ValidateFpsgdOptions(options));
  options_ = options;
  if (train_.empty()) return OkStatus();
  auto start = std::chrono::steady_clock::now();
  if (grid_blocks_ != options_.Blocks() || grid_sorted_ != options_.sort_blocks) {
    BuildGrid();
    load_seconds_.grid = SecondsSince(start);
    start = std::chrono::steady_clock::now();
  }
  scheduler_ = std::make_unique<BlockScheduler>(grid_blocks_, options_.seed);
  InitModel();
  load_seconds_.init = SecondsSince(start);
  return OkStatus();
}

FpsgdEpochStats FpsgdTrainer::RunEpoch() {
  TS_CHECK(!train_.empty()) << "RunEpoch before Load";
  const int dim8 = RoundUp(options_.dim, kBlock);
  const StepParams params{mu_, options_.lr, options_.l2, options_.l2_bias,
                          1.0f / static_cast<float>(options_.dim)};
  const ProcessFn process = PickProcess(dim8);
  std::vector<double> idle(options_.threads, 0.0), cpu(options_.threads, 0.0);
  const auto start = std::chrono::steady_clock::now();
  RunOnThreads(options_.threads, [&](int t) {
    const double cpu_start = ThreadCpuSeconds();
    for (;;) {
      const auto wait_start = std::chrono::steady_clock::now();
      const int block = scheduler_->Acquire();
      idle[t] +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
      if (block < 0) break;
      const int64_t begin = block_start_[block], end = block_start_[block + 1];
      process(train_.data() + begin, end - begin, users_.get(), items_.get(), stride_, params,
              dim8);
      scheduler_->Release(block);
    }
    cpu[t] = ThreadCpuSeconds() - cpu_start;
  });
  FpsgdEpochStats stats;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  scheduler_->StartEpoch();
  stats.updates = num_train();
  stats.updates_per_sec = stats.updates / std::max(stats.seconds, 1e-9);
  double idle_total = 0;
  for (double s : idle) idle_total += s;
  stats.idle_fraction = idle_total / (stats.seconds * options_.threads);
  for (double s : cpu) stats.cpu_seconds += s;
  stats.updates_per_cpu_sec_x_threads =
      stats.updates / std::max(stats.cpu_seconds, 1e-9) * options_.threads;
  return stats;
}

double FpsgdTrainer::Rmse(const std::vector<Entry>& set) const {
  if (set.empty()) return 0;
  const int dim8 = RoundUp(options_.dim, kBlock);
  std::vector<double> sse(options_.threads, 0.0);
  const int64_t n = static_cast<int64_t>(set.size());
  RunOnThreads(options_.threads, [&](int t) {
    double local = 0;
    for (int64_t k = n * t / options_.threads; k < n * (t + 1) / options_.threads; ++k) {
      const Entry& e = set[k];
      float pred = mu_;
      const float* p = e.user >= 0 ? users_.get() + int64_t{e.user} * stride_ : nullptr;
      const float* q = e.item >= 0 ? items_.get() + int64_t{e.item} * stride_ : nullptr;
      if (p != nullptr) pred += p[dim8];
      if (q != nullptr) pred += q[dim8];
      if (p != nullptr && q != nullptr) {
        const V8* pv = reinterpret_cast<const V8*>(p);
        const V8* qv = reinterpret_cast<const V8*>(q);
        V8 partial = {};
        for (int j = 0; j < dim8 / kBlock; ++j) partial += pv[j] * qv[j];
        pred += Sum(partial);
      }
      const double err = static_cast<double>(e.rating) - std::clamp(pred, min_rating_, max_rating_);
      local += err * err;
    }
    sse[t] = local;
  });
  double total = 0;
  for (double s : sse) total += s;
  return std::sqrt(total / static_cast<double>(n));
}

double FpsgdTrainer::TestRmse() const { return Rmse(test_); }
double FpsgdTrainer::TrainRmse() const { return Rmse(train_); }

}  // namespace tessera::bench

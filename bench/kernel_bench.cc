// The compute of one MF training step, piece by piece, on one thread: what the worker does
// (MfBatchGradientCpu on gathered rows) and what the server does per row (FindBatch, copying
// rows into a pull reply, Adagrad on scattered rows). Tables have `users` rows, so rows are
// scattered over hundreds of MB as in training.
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "bench/benches.h"
#include "kernels/mf.h"
#include "kernels/random_math.h"
#include "kernels/sparse_optimizer.h"
#include "server/embedding_table.h"

namespace tessera::bench {
namespace {

// Runs `fn` (which processes `items` things) repeatedly for `seconds`; returns things/s.
template <typename Fn>
double Rate(double seconds, double items, Fn&& fn) {
  fn();  // warm
  int64_t calls = 0;
  auto start = Clock::now();
  do {
    fn();
    ++calls;
  } while (SecondsSince(start) < seconds);
  return static_cast<double>(calls) * items / SecondsSince(start);
}

}  // namespace

bool RunKernelBench(const KernelBenchOptions& o, JsonLines* json) {
  std::printf(
      "\n== Kernels, one thread, batch %d: samples/s (MF) or rows/s (server side); "
      "table of %lld rows\n",
      o.batch, static_cast<long long>(o.users));
  std::printf("%-5s %-44s %12s %12s\n", "dim", "what", "rate (med)", "rate (best)");
  for (int dim : o.dims) {
    const int stride = dim + 1;
    uint64_t state = 7;
    auto next = [&](uint64_t bound) {
      state = kernels::SplitMix64(state);
      return static_cast<int32_t>(state % bound);
    };
    // Worker: a batch whose users are nearly all distinct and whose items repeat (as in the
    // Zipf-skewed data), rows already gathered into dense matrices.
    const int num_users = o.batch;
    const int num_items = o.batch / 2;
    std::vector<float> user_rows(static_cast<size_t>(num_users) * stride, 0.05f);
    std::vector<float> item_rows(static_cast<size_t>(num_items) * stride, 0.05f);
    std::vector<int32_t> ui(o.batch), ii(o.batch);
    std::vector<float> ratings(o.batch, 3.5f);
    for (int s = 0; s < o.batch; ++s) {
      ui[s] = next(num_users);
      ii[s] = next(num_items);
    }
    std::vector<float> user_grads(user_rows.size()), item_grads(item_rows.size());
    kernels::MfBatch b;
    b.num_samples = o.batch;
    b.user_index = ui.data();
    b.item_index = ii.data();
    b.ratings = ratings.data();
    b.dim = dim;
    b.user_rows = user_rows.data();
    b.num_users = num_users;
    b.item_rows = item_rows.data();
    b.num_items = num_items;
    b.global_mean = 3.5f;
    b.l2 = 0.05f;

    // Server: one table of `users` rows (dim + 1 weights, Adagrad), a batch of distinct keys.
    server::TableOptions to;
    to.dim = stride;
    to.zero_tail = 1;
    to.optimizer.kind = kernels::OptimizerKind::kAdagrad;
    auto table_or = server::EmbeddingTable::Create(to);
    if (!table_or.ok()) return false;
    server::EmbeddingTable& table = **table_or;
    std::vector<uint64_t> all_keys(static_cast<size_t>(o.users));
    for (size_t k = 0; k < all_keys.size(); ++k) all_keys[k] = kernels::SplitMix64(k + 1);
    std::vector<float*> rows(all_keys.size());
    table.FindBatch(all_keys.data(), static_cast<int64_t>(all_keys.size()), true, rows.data());
    // 64 random batches of keys (and their rows), used in turn, so that consecutive calls
    // touch different rows, as consecutive training steps do.
    const int num_keys = o.batch;
    constexpr int kBatches = 64;
    std::vector<std::vector<uint64_t>> key_batches(kBatches, std::vector<uint64_t>(num_keys));
    std::vector<std::vector<float*>> row_batches(kBatches, std::vector<float*>(num_keys));
    for (int k = 0; k < kBatches; ++k) {
      for (int i = 0; i < num_keys; ++i) {
        const size_t r = static_cast<size_t>(next(all_keys.size()));
        key_batches[k][i] = all_keys[r];
        row_batches[k][i] = rows[r];
      }
    }
    std::vector<float*> batch_rows(num_keys);
    std::vector<float> reply(static_cast<size_t>(num_keys) * stride);
    std::vector<float> grads(static_cast<size_t>(num_keys) * stride, 1e-3f);
    size_t which = 0;

    struct Case {
      const char* name;
      const char* key;
      double items;
      std::function<void()> fn;
    };
    const Case cases[] = {
        {"MfBatchGradientCpu (samples/s)", "kernel_mf_gradient", static_cast<double>(o.batch),
         [&] {
           double sse = 0;
           (void)kernels::MfBatchGradientCpu(b, user_grads.data(), item_grads.data(), &sse);
         }},
        {"EmbeddingTable::FindBatch, hits (rows/s)", "kernel_find_batch",
         static_cast<double>(num_keys),
         [&] {
           which = (which + 1) % kBatches;
           table.FindBatch(key_batches[which].data(), num_keys, false, batch_rows.data());
         }},
        {"FindBatch + copy rows to a reply (rows/s)", "kernel_pull_serve",
         static_cast<double>(num_keys),
         [&] {
           which = (which + 1) % kBatches;
           table.FindBatch(key_batches[which].data(), num_keys, false, batch_rows.data());
           for (int i = 0; i < num_keys; ++i) {
             std::memcpy(reply.data() + static_cast<size_t>(i) * stride, batch_rows[i],
                         stride * sizeof(float));
           }
         }},
        {"ApplySparseUpdateCpu Adagrad, scattered (rows/s)", "kernel_adagrad",
         static_cast<double>(num_keys),
         [&] {
           which = (which + 1) % kBatches;
           (void)kernels::ApplySparseUpdateCpu(to.optimizer, row_batches[which].data(),
                                               grads.data(), num_keys, stride);
         }},
        {"... the same with the finite row check (rows/s)", "kernel_adagrad_checked",
         static_cast<double>(num_keys),
         [&] {
           which = (which + 1) % kBatches;
           int64_t first_non_finite = 0;
           (void)kernels::ApplySparseUpdateCpu(to.optimizer, row_batches[which].data(),
                                               grads.data(), num_keys, stride, &first_non_finite);
         }},
    };
    for (const Case& c : cases) {
      Samples rate;
      for (int rep = 0; rep < o.reps; ++rep) rate.Add(Rate(o.seconds, c.items, c.fn));
      std::printf("%-5d %-44s %12s %12s\n", dim, c.name, Human(rate.Median()).c_str(),
                  Human(rate.Best()).c_str());
      json->Write(c.key, {{"dim", dim},
                          {"batch", o.batch},
                          {"per_sec", rate.Median()},
                          {"per_sec_best", rate.Best()}});
    }
  }
  return true;
}

}  // namespace tessera::bench

// tessera_bench ceiling: the FPSGD trainer of bench/fpsgd.h on a rating file, per epoch its
// updates/s, test RMSE and the seconds since the load began; with --grid, the best test RMSE
// over a small grid of learning rates x regularisations.
#include <cstdio>
#include <memory>
#include <utility>

#include "bench/benches.h"
#include "bench/fpsgd.h"

namespace tessera::bench {
namespace {

StatusOr<std::unique_ptr<FpsgdTrainer>> Load(const CeilingBenchOptions& o, double* load_seconds,
                                             Clock::time_point t0) {
  TS_ASSIGN_OR_RETURN(std::unique_ptr<FpsgdTrainer> trainer, FpsgdTrainer::Create(o.fpsgd));
  TS_RETURN_IF_ERROR(trainer->Load(o.train, o.test));
  *load_seconds = SecondsSince(t0);
  std::printf(
      "\n== MF ceiling (FPSGD, %d threads, %d x %d blocks): %lld users x %lld items, "
      "%lld train / %lld test ratings, mean %.4f; load %.2f s (read %.2f, ids %.2f, grid %.2f, "
      "init %.2f)\n",
      o.fpsgd.threads, trainer->options().Blocks(), trainer->options().Blocks(),
      static_cast<long long>(trainer->num_users()), static_cast<long long>(trainer->num_items()),
      static_cast<long long>(trainer->num_train()), static_cast<long long>(trainer->num_test()),
      trainer->global_mean(), *load_seconds, trainer->load_seconds().read,
      trainer->load_seconds().map, trainer->load_seconds().grid, trainer->load_seconds().init);
  return trainer;
}

// Load, or null after saying why on stderr.
std::unique_ptr<FpsgdTrainer> LoadTrainer(const CeilingBenchOptions& o, double* load_seconds,
                                          Clock::time_point t0) {
  auto loaded = Load(o, load_seconds, t0);
  if (loaded.ok()) return std::move(*loaded);
  std::fprintf(stderr, "ceiling: %s\n", loaded.status().ToString().c_str());
  return nullptr;
}

bool RunCurve(const CeilingBenchOptions& o, JsonLines* json) {
  const auto t0 = Clock::now();
  double load_seconds = 0;
  std::unique_ptr<FpsgdTrainer> loaded = LoadTrainer(o, &load_seconds, t0);
  if (loaded == nullptr) return false;
  FpsgdTrainer& trainer = *loaded;
  std::printf("dim %d, lr %g, l2 %g, l2_bias %g, init_std %g\n", o.fpsgd.dim, o.fpsgd.lr,
              o.fpsgd.l2, o.fpsgd.l2_bias, o.fpsgd.init_std);
  std::printf("%-6s %12s %14s %7s %10s %10s\n", "epoch", "updates/s", "per CPU x thr", "idle",
              "test RMSE", "elapsed s");
  Samples steady, per_cpu;
  double rmse = 0;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    const FpsgdEpochStats s = trainer.RunEpoch();
    rmse = trainer.TestRmse();
    const double elapsed = SecondsSince(t0);
    std::printf("%-6d %12s %14s %6.1f%% %10.4f %10.2f\n", epoch, Human(s.updates_per_sec).c_str(),
                Human(s.updates_per_cpu_sec_x_threads).c_str(), 100 * s.idle_fraction, rmse,
                elapsed);
    std::fflush(stdout);
    steady.Add(s.updates_per_sec);
    per_cpu.Add(s.updates_per_cpu_sec_x_threads);
    json->Write("ceiling_epoch",
                {{"dim", o.fpsgd.dim},
                 {"threads", o.fpsgd.threads},
                 {"blocks", trainer.options().Blocks()},
                 {"epoch", epoch},
                 {"updates_per_sec", s.updates_per_sec},
                 {"updates_per_cpu_sec_x_threads", s.updates_per_cpu_sec_x_threads},
                 {"idle_fraction", s.idle_fraction},
                 {"test_rmse", rmse},
                 {"elapsed_sec", elapsed},
                 {"load_sec", load_seconds}});
  }
  std::printf("median %s updates/s over %d epochs %s; per CPU second x threads %s %s\n",
              Human(steady.Median()).c_str(), o.epochs, steady.List(1e6).c_str(),
              Human(per_cpu.Median()).c_str(), per_cpu.List(1e6).c_str());
  json->Write("ceiling", {{"dim", o.fpsgd.dim},
                          {"threads", o.fpsgd.threads},
                          {"blocks", trainer.options().Blocks()},
                          {"epochs", o.epochs},
                          {"updates_per_sec", steady.Median()},
                          {"updates_per_sec_best", steady.Best()},
                          {"updates_per_cpu_sec_x_threads", per_cpu.Median()},
                          {"test_rmse", rmse},
                          {"load_sec", load_seconds},
                          {"elapsed_sec", SecondsSince(t0)}});
  return true;
}

bool RunGrid(const CeilingBenchOptions& o, JsonLines* json) {
  const auto t0 = Clock::now();
  double load_seconds = 0;
  std::unique_ptr<FpsgdTrainer> loaded = LoadTrainer(o, &load_seconds, t0);
  if (loaded == nullptr) return false;
  FpsgdTrainer& trainer = *loaded;
  std::printf("grid: dim %d, %d epochs per setting, l2_bias %g; best test RMSE per setting\n",
              o.fpsgd.dim, o.epochs, o.fpsgd.l2_bias);
  std::printf("%8s %8s %10s %6s %10s\n", "lr", "l2", "best RMSE", "epoch", "seconds");
  double best_rmse = 1e300;
  FpsgdOptions best;
  for (float lr : o.grid_lr) {
    for (float l2 : o.grid_l2) {
      FpsgdOptions f = o.fpsgd;
      f.lr = lr;
      f.l2 = l2;
      const auto start = Clock::now();
      if (Status s = trainer.Reset(f); !s.ok()) {
        std::fprintf(stderr, "ceiling: %s\n", s.ToString().c_str());
        return false;
      }
      double setting_best = 1e300;
      int best_epoch = 0;
      for (int epoch = 1; epoch <= o.epochs; ++epoch) {
        trainer.RunEpoch();
        const double rmse = trainer.TestRmse();
        if (rmse < setting_best) {
          setting_best = rmse;
          best_epoch = epoch;
        }
      }
      std::printf("%8g %8g %10.4f %6d %10.2f\n", lr, l2, setting_best, best_epoch,
                  SecondsSince(start));
      std::fflush(stdout);
      json->Write("ceiling_grid", {{"dim", f.dim},
                                   {"lr", lr},
                                   {"l2", l2},
                                   {"l2_bias", f.l2_bias},
                                   {"epochs", o.epochs},
                                   {"best_rmse", setting_best},
                                   {"best_epoch", best_epoch}});
      if (setting_best < best_rmse) {
        best_rmse = setting_best;
        best = f;
      }
    }
  }
  std::printf("best: lr %g, l2 %g: test RMSE %.4f\n", best.lr, best.l2, best_rmse);
  json->Write("ceiling_grid_best", {{"dim", best.dim},
                                    {"lr", best.lr},
                                    {"l2", best.l2},
                                    {"l2_bias", best.l2_bias},
                                    {"epochs", o.epochs},
                                    {"best_rmse", best_rmse}});
  return true;
}

}  // namespace

bool RunCeilingBench(const CeilingBenchOptions& o, JsonLines* json) {
  if (o.train.empty()) {
    std::fprintf(stderr, "ceiling needs --train FILE (and --test FILE)\n");
    return false;
  }
  return o.grid ? RunGrid(o, json) : RunCurve(o, json);
}

}  // namespace tessera::bench

#include <cstdio>

#include "bench/benches.h"
#include "worker/data/rating_reader.h"

namespace tessera::bench {

bool RunReadBench(const ReadBenchOptions& o, JsonLines* json) {
  double lines = 0;
  {
    worker::RatingReadOptions warm;
    warm.format = worker::RatingFormat::kLibmf;
    auto first = worker::ReadRatings(o.path, warm);  // page cache, not timed
    if (!first.ok()) {
      std::fprintf(stderr, "read %s: %s\n", o.path.c_str(), first.status().ToString().c_str());
      return false;
    }
    lines = static_cast<double>(first->data.size());
  }
  std::FILE* f = std::fopen(o.path.c_str(), "rb");
  std::fseek(f, 0, SEEK_END);
  const double bytes = static_cast<double>(std::ftell(f));
  std::fclose(f);

  std::printf("\n== ReadRatings (LIBMF text, %.0f lines, %.1f MB), %d reps\n", lines, bytes / 1e6,
              o.reps);
  std::printf("%-8s %14s %14s %10s  %s\n", "threads", "lines/s (med)", "lines/s (best)", "MB/s",
              "all (M lines/s)");
  for (int threads : o.threads) {
    Samples rate;
    for (int rep = 0; rep < o.reps; ++rep) {
      worker::RatingReadOptions ro;
      ro.format = worker::RatingFormat::kLibmf;
      ro.num_threads = threads;
      auto start = Clock::now();
      auto result = worker::ReadRatings(o.path, ro);
      const double seconds = SecondsSince(start);
      if (!result.ok() || static_cast<double>(result->data.size()) != lines) {
        std::fprintf(stderr, "read %s failed or changed size\n", o.path.c_str());
        return false;
      }
      rate.Add(lines / seconds);
    }
    const double med = rate.Median();
    std::printf("%-8d %14s %14s %10.0f  %s\n", threads, Human(med).c_str(),
                Human(rate.Best()).c_str(), med * bytes / lines / 1e6, rate.List(1e6).c_str());
    json->Write("read", {{"threads", threads},
                         {"lines", lines},
                         {"bytes", bytes},
                         {"lines_per_sec", med},
                         {"lines_per_sec_best", rate.Best()}});
  }
  return true;
}

}  // namespace tessera::bench

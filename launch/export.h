// `tessera export` and `tessera recommend`: a checkpoint turned into files a serving or analysis
// stack reads without Tessera, and top-K recommendations computed from those files alone.
#pragma once

#include <cstdio>
#include <string>

#include "core/env.h"
#include "core/status.h"

namespace tessera::launch {

enum class ExportFormat { kNpy, kText };

struct ExportOptions {
  std::string checkpoint;  // DIR/step-N (or a checkpoint root: its latest)
  std::string out;         // export directory, created
  ExportFormat format = ExportFormat::kNpy;
  Env* env = Env::Default();  // reads the checkpoint (borrowed)
};

// Writes, per table, keys.npy (uint64, n) and embeddings.npy (float32, n x dim) sorted by key
// (mf: also bias.npy), or <table>.txt; dense.npy / dense.txt for the CTR models; and model.json
// (proto ExportDescription). Optimizer state is left out. Every file read is checksum-checked.
Status ExportCheckpoint(const ExportOptions& options);

struct RecommendOptions {
  std::string export_dir;
  std::string user;        // one user id, or
  std::string users_file;  // a file with one user id per line
  int k = 10;
  std::string exclude_seen;  // ratings file: items a user rated are not recommended
};

// Prints "user<TAB>rank<TAB>item<TAB>score" lines, best first, to `out`: the MF score
// mu + b_u + b_i + p_u . q_i over every item of the export (ties: smaller item id first). A user
// the export does not know is ranked by mu + b_i, with a warning on stderr.
Status Recommend(const RecommendOptions& options, std::FILE* out);

}  // namespace tessera::launch

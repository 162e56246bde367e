#include "launch/export.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <numeric>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/checkpoint.h"
#include "core/checkpoint_check.h"
#include "core/logging.h"
#include "core/row_file.h"
#include "core/safe_output.h"
#include "kernels/finite.h"
#include "launch/npy.h"
#include "worker/data/rating_reader.h"

namespace tessera::launch {
namespace {

// OK, or NonFinite (exit status 3) when values[0, n) hold a NaN or infinity: a diverged model is
// neither exported nor ranked from. `what` names the values.
Status CheckFinite(const float* values, int64_t n, const std::string& what) {
  const int64_t bad = kernels::FindNonFinite(values, n);
  if (bad == n) return OkStatus();
  return Status::NonFinite(
      "non-finite model: " + what + ": value " + std::to_string(bad) + " is " +
      std::to_string(values[bad]) +
      "; refusing to use a diverged model (resume from an earlier checkpoint)");
}

// The rows of one table, sorted by key: weights only (optimizer state dropped).
struct TableRows {
  std::vector<uint64_t> keys;
  std::vector<float> weights;  // keys.size() x dim
  int dim = 0;
};

StatusOr<TableRows> ReadTable(Env* env, const std::string& dir,
                              const proto::CheckpointManifest& manifest,
                              const proto::TableDescription& table) {
  TableRows unsorted;
  unsorted.dim = table.dim();
  std::vector<float> row;
  for (const auto& entry : manifest.files()) {
    if (entry.kind() != proto::CheckpointFile::KIND_ROWS || entry.table_id() != table.table_id()) {
      continue;
    }
    TS_ASSIGN_OR_RETURN(auto reader, checkpoint::RowFileReader::Open(env, dir, entry));
    const checkpoint::RowFileHeader& header = reader->header();
    if (static_cast<int>(header.dim) != table.dim()) {
      return Status::DataLoss(reader->path() + " has rows of " + std::to_string(header.dim) +
                              " weights, the manifest says " + std::to_string(table.dim()));
    }
    row.resize(header.dim + header.state_floats);
    // The first non-finite row is reported once the file's checksum has passed: a corrupt file
    // is DataLoss, a file of a diverged model NonFinite.
    Status finite;
    for (uint64_t i = 0; i < header.num_rows; ++i) {
      uint64_t key;
      TS_RETURN_IF_ERROR(reader->Next(&key, row.data()));
      if (finite.ok()) {
        finite = CheckFinite(
            row.data(), static_cast<int64_t>(row.size()),
            reader->path() + ": table " + table.name() + ", key " + std::to_string(key));
      }
      unsorted.keys.push_back(key);
      unsorted.weights.insert(unsorted.weights.end(), row.begin(), row.begin() + header.dim);
    }
    TS_RETURN_IF_ERROR(reader->Finish());
    TS_RETURN_IF_ERROR(finite);
  }
  std::vector<size_t> order(unsorted.keys.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return unsorted.keys[a] < unsorted.keys[b]; });
  TableRows sorted;
  sorted.dim = unsorted.dim;
  sorted.keys.reserve(order.size());
  sorted.weights.reserve(unsorted.weights.size());
  for (size_t i : order) {
    sorted.keys.push_back(unsorted.keys[i]);
    const float* w = unsorted.weights.data() + i * unsorted.dim;
    sorted.weights.insert(sorted.weights.end(), w, w + unsorted.dim);
  }
  return sorted;
}

Status WriteText(const std::string& path, const std::string& what) {
  std::ofstream out(path);
  out << what;
  out.close();
  if (!out) return Status::Unavailable("cannot write " + path);
  return OkStatus();
}

std::string FormatFloat(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

constexpr char kExportKind[] = "export";

// The export of the checkpoint at `dir` into the directory `out` (a staging directory).
Status WriteExport(Env* env, const std::string& dir, const proto::CheckpointManifest& manifest,
                   const ExportOptions& options, const std::string& out) {
  const proto::ModelDescription& model = manifest.model();
  const float global_bias = static_cast<float>(model.global_bias());
  TS_RETURN_IF_ERROR(CheckFinite(&global_bias, 1, dir + ": the global bias"));
  const bool mf = model.type() == "mf";
  const bool npy = options.format == ExportFormat::kNpy;
  proto::ExportDescription description;
  description.set_format("tessera-export");
  description.set_version(1);
  description.set_checkpoint(dir);
  description.set_step(manifest.step());
  *description.mutable_model() = model;
  for (const auto& table : model.tables()) {
    TS_ASSIGN_OR_RETURN(TableRows rows, ReadTable(env, dir, manifest, table));
    const int64_t n = static_cast<int64_t>(rows.keys.size());
    // MF rows are [factors | bias]: the factors are the embedding, the bias a column of its own.
    const int dim = mf ? rows.dim - 1 : rows.dim;
    std::vector<float> embeddings(static_cast<size_t>(n) * dim), bias;
    for (int64_t i = 0; i < n; ++i) {
      const float* w = rows.weights.data() + i * rows.dim;
      std::copy(w, w + dim, embeddings.data() + i * dim);
      if (mf) bias.push_back(w[dim]);
    }
    proto::ExportTable* t = description.add_tables();
    t->set_name(table.name());
    t->set_table_id(table.table_id());
    t->set_dim(dim);
    t->set_num_rows(static_cast<uint64_t>(n));
    if (npy) {
      const std::string sub = out + "/" + table.name();
      TS_RETURN_IF_ERROR(checkpoint::MakeDirs(env, sub));
      TS_RETURN_IF_ERROR(WriteNpy(sub + "/keys.npy", rows.keys.data(), {n}));
      TS_RETURN_IF_ERROR(WriteNpy(sub + "/embeddings.npy", embeddings.data(), {n, dim}));
      t->set_keys_file(table.name() + "/keys.npy");
      t->set_embeddings_file(table.name() + "/embeddings.npy");
      if (mf) {
        TS_RETURN_IF_ERROR(WriteNpy(sub + "/bias.npy", bias.data(), {n}));
        t->set_bias_file(table.name() + "/bias.npy");
      }
    } else {
      std::ostringstream text;
      for (int64_t i = 0; i < n; ++i) {
        text << rows.keys[i];
        for (int j = 0; j < rows.dim; ++j)
          text << ' ' << FormatFloat(rows.weights[i * rows.dim + j]);
        text << '\n';
      }
      TS_RETURN_IF_ERROR(WriteText(out + "/" + table.name() + ".txt", text.str()));
      t->set_text_file(table.name() + ".txt");
    }
  }
  if (const proto::CheckpointFile* dense = checkpoint::FindFile(manifest, "dense.state")) {
    proto::DenseCheckpoint state;
    TS_RETURN_IF_ERROR(checkpoint::ReadProtoFile(env, dir, *dense, &state));
    const int64_t n = state.params_size();
    TS_RETURN_IF_ERROR(
        CheckFinite(state.params().data(), n, dir + "/" + dense->name() + ": dense parameters"));
    if (npy) {
      TS_RETURN_IF_ERROR(WriteNpy(out + "/dense.npy", state.params().data(), {n}));
      description.set_dense_file("dense.npy");
    } else {
      std::string text;
      for (float v : state.params()) text += FormatFloat(v) + "\n";
      TS_RETURN_IF_ERROR(WriteText(out + "/dense.txt", text));
      description.set_dense_file("dense.txt");
    }
  }
  TS_RETURN_IF_ERROR(WriteText(out + "/model.json", checkpoint::ToJson(description)));
  TS_LOG(INFO) << "exported " << dir << " (" << model.type() << ", step " << manifest.step() << ", "
               << description.tables_size() << " tables) to " << options.out;
  return OkStatus();
}

}  // namespace

Status ExportCheckpoint(const ExportOptions& options) {
  Env* env = options.env;
  TS_ASSIGN_OR_RETURN(const std::string dir,
                      checkpoint::ResolveResume(env, options.checkpoint, "", "--checkpoint"));
  TS_ASSIGN_OR_RETURN(proto::CheckpointManifest manifest, checkpoint::ReadManifest(env, dir));
  TS_RETURN_IF_ERROR(checkpoint::VerifyFiles(env, dir, manifest, /*checksums=*/false));
  TS_RETURN_IF_ERROR(checkpoint::CheckManifestAgainstFiles(env, dir, manifest));
  // The export is written whole into a staging directory next to --out, then renamed into place:
  // --out holds the old export or the new one, never a mix.
  TS_RETURN_IF_ERROR(
      safe_output::CheckOutputDir(options.out, "--out", kExportKind, {{"--checkpoint", dir}}));
  const std::string staged = safe_output::TemporaryPathFor(options.out);
  (void)env->RemoveAll(staged);
  Status written = safe_output::PrepareOutputDir(staged, "--out", kExportKind, {});
  if (written.ok()) written = WriteExport(env, dir, manifest, options, staged);
  if (written.ok()) written = safe_output::ReplaceDir(staged, options.out, "--out");
  if (!written.ok()) (void)env->RemoveAll(staged);
  return written;
}

namespace {

struct MfTable {
  std::unordered_map<uint64_t, int64_t> index;  // key -> row
  std::vector<uint64_t> keys;
  std::vector<float> embeddings, bias;
  int dim = 0;
};

StatusOr<MfTable> LoadMfTable(const std::string& dir, const proto::ExportTable& t) {
  MfTable table;
  std::vector<int64_t> shape;
  TS_RETURN_IF_ERROR(ReadNpy(dir + "/" + t.keys_file(), &table.keys, &shape));
  TS_RETURN_IF_ERROR(ReadNpy(dir + "/" + t.embeddings_file(), &table.embeddings, &shape));
  if (shape.size() != 2 || shape[0] != static_cast<int64_t>(table.keys.size())) {
    return Status::DataLoss(dir + "/" + t.embeddings_file() + " does not match its keys");
  }
  table.dim = static_cast<int>(shape[1]);
  TS_RETURN_IF_ERROR(ReadNpy(dir + "/" + t.bias_file(), &table.bias, &shape));
  if (table.bias.size() != table.keys.size()) {
    return Status::DataLoss(dir + "/" + t.bias_file() + " does not match its keys");
  }
  TS_RETURN_IF_ERROR(CheckFinite(table.embeddings.data(),
                                 static_cast<int64_t>(table.embeddings.size()),
                                 dir + "/" + t.embeddings_file()));
  TS_RETURN_IF_ERROR(CheckFinite(table.bias.data(), static_cast<int64_t>(table.bias.size()),
                                 dir + "/" + t.bias_file()));
  for (size_t i = 0; i < table.keys.size(); ++i)
    table.index[table.keys[i]] = static_cast<int64_t>(i);
  return table;
}

StatusOr<uint64_t> ParseId(const std::string& text, const std::string& where) {
  size_t used = 0;
  unsigned long long id = 0;
  try {
    id = std::stoull(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || text[0] == '-') {
    return Status::InvalidArgument(where + ": '" + text + "' is not a user id");
  }
  return static_cast<uint64_t>(id);
}

}  // namespace

Status Recommend(const RecommendOptions& options, std::FILE* out) {
  if (options.k < 1) return Status::InvalidArgument("--k must be at least 1");
  std::ifstream in(options.export_dir + "/model.json");
  if (!in) return Status::NotFound("no export at " + options.export_dir + " (no model.json)");
  std::stringstream json;
  json << in.rdbuf();
  proto::ExportDescription description;
  TS_RETURN_IF_ERROR(
      checkpoint::FromJson(json.str(), options.export_dir + "/model.json", &description));
  if (description.model().type() != "mf") {
    return Status::InvalidArgument("tessera recommend needs an MF export; " + options.export_dir +
                                   " holds a " + description.model().type() + " model");
  }
  const proto::ExportTable *user_file = nullptr, *item_file = nullptr;
  for (const auto& t : description.tables()) {
    if (t.name() == "user") user_file = &t;
    if (t.name() == "item") item_file = &t;
  }
  if (user_file == nullptr || item_file == nullptr || user_file->keys_file().empty()) {
    return Status::InvalidArgument(options.export_dir +
                                   " has no npy user/item tables (export with --format npy)");
  }
  TS_ASSIGN_OR_RETURN(MfTable users, LoadMfTable(options.export_dir, *user_file));
  TS_ASSIGN_OR_RETURN(MfTable items, LoadMfTable(options.export_dir, *item_file));
  if (users.dim != items.dim) return Status::DataLoss("user and item factors differ in size");

  std::vector<uint64_t> wanted;
  if (!options.user.empty()) {
    TS_ASSIGN_OR_RETURN(uint64_t id, ParseId(options.user, "--user"));
    wanted.push_back(id);
  }
  if (!options.users_file.empty()) {
    std::ifstream list(options.users_file);
    if (!list) return Status::NotFound("cannot read --users " + options.users_file);
    std::string line;
    for (int64_t n = 1; std::getline(list, line); ++n) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
      if (line.empty()) continue;
      TS_ASSIGN_OR_RETURN(uint64_t id, ParseId(line, options.users_file + ":" + std::to_string(n)));
      wanted.push_back(id);
    }
  }
  if (wanted.empty()) return Status::InvalidArgument("give --user ID or --users FILE");

  std::unordered_map<uint64_t, std::unordered_set<uint64_t>> seen;
  if (!options.exclude_seen.empty()) {
    std::unordered_set<uint64_t> wanted_set(wanted.begin(), wanted.end());
    worker::RatingReadOptions read;
    TS_ASSIGN_OR_RETURN(worker::RatingReadResult ratings,
                        worker::ReadRatings(options.exclude_seen, read));
    for (size_t i = 0; i < ratings.data.size(); ++i) {
      if (wanted_set.count(ratings.data.users[i])) {
        seen[ratings.data.users[i]].insert(ratings.data.items[i]);
      }
    }
  }

  const double mu = description.model().global_bias();
  if (!std::isfinite(mu)) {
    return Status::NonFinite("non-finite model: " + options.export_dir +
                             "/model.json: the global bias is not finite");
  }
  const int dim = users.dim;
  const int64_t num_items = static_cast<int64_t>(items.keys.size());
  std::vector<double> scores(num_items);
  std::vector<int64_t> order;
  const std::vector<float> zeros(dim, 0.0f);
  for (uint64_t user : wanted) {
    auto it = users.index.find(user);
    const float* p = zeros.data();
    double b_u = 0;
    if (it == users.index.end()) {
      TS_LOG(WARNING) << "user " << user
                      << " is not in the export (no training ratings): ranked by item bias";
    } else {
      p = users.embeddings.data() + it->second * dim;
      b_u = users.bias[it->second];
    }
    const auto seen_it = seen.find(user);
    order.clear();
    for (int64_t i = 0; i < num_items; ++i) {
      if (seen_it != seen.end() && seen_it->second.count(items.keys[i])) continue;
      const float* q = items.embeddings.data() + i * dim;
      double dot = 0;
      for (int j = 0; j < dim; ++j) dot += static_cast<double>(p[j]) * q[j];
      scores[i] = mu + b_u + items.bias[i] + dot;
      order.push_back(i);
    }
    const size_t k = std::min<size_t>(options.k, order.size());
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
      return scores[a] != scores[b] ? scores[a] > scores[b] : items.keys[a] < items.keys[b];
    });
    for (size_t r = 0; r < k; ++r) {
      std::fprintf(out, "%llu\t%zu\t%llu\t%.9g\n", static_cast<unsigned long long>(user), r + 1,
                   static_cast<unsigned long long>(items.keys[order[r]]), scores[order[r]]);
    }
  }
  return OkStatus();
}

}  // namespace tessera::launch

#include "core/checkpoint_check.h"

#include <cmath>
#include <map>
#include <set>

#include "core/checkpoint.h"
#include "core/row_file.h"

namespace tessera::checkpoint {
namespace {

class Checker {
 public:
  Checker(Env* env, const std::string& dir, const proto::CheckpointManifest& manifest)
      : env_(env), dir_(dir), m_(manifest), where_("manifest " + dir + "/" + kManifestName) {}

  Status Run() {
    TS_RETURN_IF_ERROR(CheckShape());
    TS_RETURN_IF_ERROR(CheckWorkers());
    TS_RETURN_IF_ERROR(CheckTables());
    return CheckDense();
  }

 private:
  Status Bad(const std::string& field, const std::string& why) const {
    return Status::DataLoss(where_ + ": field " + field + " " + why);
  }

  Status CheckShape() {
    if (m_.step() < 0) return Bad("step", "is " + std::to_string(m_.step()) + ", below 0");
    if (m_.num_workers() < 1 || m_.num_workers() > 1024) {
      return Bad("num_workers", "is " + std::to_string(m_.num_workers()));
    }
    if (m_.num_servers() < 1 || m_.num_servers() > 1024) {
      return Bad("num_servers", "is " + std::to_string(m_.num_servers()));
    }
    if (m_.model().num_workers() != 0 && m_.model().num_workers() != m_.num_workers()) {
      return Bad("model.num_workers", "is " + std::to_string(m_.model().num_workers()) +
                                          ", num_workers " + std::to_string(m_.num_workers()));
    }
    std::set<std::string> names;
    for (const auto& f : m_.files()) {
      if (f.name().empty() || f.name().find('/') != std::string::npos || f.name() == "." ||
          f.name() == ".." || f.name() == kManifestName) {
        return Bad("files", "lists a file named \"" + f.name() + "\"");
      }
      if (!names.insert(f.name()).second) return Bad("files", "lists " + f.name() + " twice");
    }
    return OkStatus();
  }

  Status CheckWorkers() {
    int listed = 0;
    for (const auto& f : m_.files()) listed += f.kind() == proto::CheckpointFile::KIND_WORKER;
    if (listed != m_.num_workers()) {
      return Bad("num_workers", "is " + std::to_string(m_.num_workers()) + ", the manifest lists " +
                                    std::to_string(listed) + " worker position files");
    }
    for (int rank = 0; rank < m_.num_workers(); ++rank) {
      const proto::CheckpointFile* entry = FindFile(m_, WorkerPositionFileName(rank));
      if (entry == nullptr || entry->kind() != proto::CheckpointFile::KIND_WORKER) {
        return Bad("files", "has no " + WorkerPositionFileName(rank) + " for worker " +
                                std::to_string(rank) + " of " + std::to_string(m_.num_workers()));
      }
      proto::WorkerCheckpoint position;
      TS_RETURN_IF_ERROR(ReadProtoFile(env_, dir_, *entry, &position));
      if (position.step() != m_.step()) {
        return Bad("step", "is " + std::to_string(m_.step()) + ", but " + dir_ + "/" +
                               entry->name() + " is at step " + std::to_string(position.step()));
      }
    }
    return OkStatus();
  }

  Status CheckTables() {
    std::map<uint32_t, const proto::TableDescription*> tables;
    for (const auto& t : m_.model().tables()) {
      if (t.dim() < 1 || t.state_floats() < 0 || !tables.emplace(t.table_id(), &t).second) {
        return Bad("model.tables",
                   "has a bad or repeated entry for table " + std::to_string(t.table_id()));
      }
    }
    std::map<uint32_t, uint64_t> rows;
    for (const auto& f : m_.files()) {
      if (f.kind() != proto::CheckpointFile::KIND_ROWS) continue;
      auto it = tables.find(f.table_id());
      if (it == tables.end()) {
        return Bad("files", "lists " + f.name() + " of table " + std::to_string(f.table_id()) +
                                ", which model.tables does not describe");
      }
      TS_ASSIGN_OR_RETURN(auto reader, RowFileReader::Open(env_, dir_, f));
      const RowFileHeader& h = reader->header();
      const proto::TableDescription& t = *it->second;
      if (static_cast<int64_t>(h.dim) != t.dim() ||
          static_cast<int64_t>(h.state_floats) != t.state_floats()) {
        return Bad("model.tables",
                   "gives table " + t.name() + " rows of " + std::to_string(t.dim()) + " + " +
                       std::to_string(t.state_floats()) + " floats, " + dir_ + "/" + f.name() +
                       " has " + std::to_string(h.dim) + " + " + std::to_string(h.state_floats));
      }
      rows[f.table_id()] += h.num_rows;
    }
    for (const auto& [id, t] : tables) {
      if (rows[id] != t->num_rows()) {
        return Bad("model.tables", "gives table " + t->name() + " " +
                                       std::to_string(t->num_rows()) + " rows, its files hold " +
                                       std::to_string(rows[id]));
      }
    }
    return OkStatus();
  }

  Status CheckDense() {
    const proto::ModelDescription& model = m_.model();
    if (!std::isfinite(model.global_bias())) return Bad("model.global_bias", "is not finite");
    const proto::CheckpointFile* dense = nullptr;
    for (const auto& f : m_.files()) {
      if (f.kind() == proto::CheckpointFile::KIND_DENSE) dense = &f;
    }
    if (model.num_dense_params() < 0) return Bad("model.num_dense_params", "is negative");
    if (model.num_dense_params() == 0) {
      if (dense != nullptr)
        return Bad("model.num_dense_params",
                   "is 0, yet " + dense->name() + " holds dense parameters");
      return OkStatus();
    }
    if (dense == nullptr) {
      return Bad("model.num_dense_params", "is " + std::to_string(model.num_dense_params()) +
                                               ", but no dense state file is listed");
    }
    proto::DenseCheckpoint state;
    TS_RETURN_IF_ERROR(ReadProtoFile(env_, dir_, *dense, &state));
    if (state.params_size() != model.num_dense_params()) {
      return Bad("model.num_dense_params", "is " + std::to_string(model.num_dense_params()) + ", " +
                                               dir_ + "/" + dense->name() + " holds " +
                                               std::to_string(state.params_size()));
    }
    for (const auto& layer : model.layers()) {
      int64_t size = 1;
      for (int64_t d : layer.shape()) {
        if (size < 0 || d < 0 || (d > 0 && size > (int64_t{1} << 40) / d)) {
          size = -1;
        } else {
          size *= d;
        }
      }
      if (layer.offset() < 0 || size < 0 || layer.offset() + size > model.num_dense_params()) {
        return Bad("model.layers", "places " + layer.name() + " outside the " +
                                       std::to_string(model.num_dense_params()) +
                                       " dense parameters");
      }
    }
    return OkStatus();
  }

  Env* env_;
  const std::string& dir_;
  const proto::CheckpointManifest& m_;
  const std::string where_;
};

}  // namespace

Status CheckManifestAgainstFiles(Env* env, const std::string& dir,
                                 const proto::CheckpointManifest& manifest) {
  return Checker(env, dir, manifest).Run();
}

}  // namespace tessera::checkpoint

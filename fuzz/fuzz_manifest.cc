// The checkpoint manifest reader (core/checkpoint.h): the input as DIR/manifest.json read by
// ReadManifest, and as JSON given to FromJson directly (so the parser is reached whatever checks
// ReadManifest adds in front of it). A manifest that reads must survive ToJson/FromJson
// unchanged, and its shard map, files and resume hint must be usable without a crash.
#include "core/checkpoint.h"
#include "core/shard_map.h"
#include "fuzz/fuzz_util.h"

namespace tessera::fuzz {
namespace {

void CheckManifest(const proto::CheckpointManifest& manifest) {
  proto::CheckpointManifest again;
  TS_FUZZ_CHECK(checkpoint::FromJson(checkpoint::ToJson(manifest), "again", &again).ok());
  TS_FUZZ_CHECK(again.SerializeAsString() == manifest.SerializeAsString());
  (void)ShardMap::FromProto(manifest.shard_map());
  for (const auto& f : manifest.files()) {
    TS_FUZZ_CHECK(checkpoint::FindFile(manifest, f.name()) != nullptr);
  }
}

}  // namespace
}  // namespace tessera::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  const std::string json(reinterpret_cast<const char*>(data), size);
  proto::CheckpointManifest parsed;
  if (checkpoint::FromJson(json, "fuzz", &parsed).ok()) fuzz::CheckManifest(parsed);

  const std::string& dir = fuzz::ScratchDir();
  fuzz::WriteFile(dir + "/" + checkpoint::kManifestName, data, size);
  StatusOr<proto::CheckpointManifest> manifest = checkpoint::ReadManifest(Env::Default(), dir);
  if (manifest.ok()) {
    TS_FUZZ_CHECK(manifest->format_version() == checkpoint::kFormatVersion);
    fuzz::CheckManifest(*manifest);
    TS_FUZZ_CHECK(!checkpoint::ResumeHint(dir, dir).empty());
  } else {
    TS_FUZZ_CHECK(manifest.status().code() != StatusCode::kOk);
  }
  return 0;
}

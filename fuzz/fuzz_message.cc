// The wire message decoder and validator (core/message.h): frame 0 decoded as the Header, then
// ValidateKeyValueMessage on PULL/PUSH (and every key and value it vouches for read), the control
// bodies parsed as each type a receiver decodes (ShardMap::FromProto on a ClusterInfo's map),
// DebugString, and the untrusted strings escaped to valid UTF-8.
//
// Input: frames, each a little-endian u32 length then that many bytes (a length past the end
// takes the rest); the first frame is the header. The frames point into the input, unaligned,
// as a transport may deliver them.
#include <google/protobuf/stubs/logging.h>

#include <cstring>
#include <vector>

#include "core/escape.h"
#include "core/message.h"
#include "core/shard_map.h"
#include "fuzz/fuzz_util.h"
#include "proto/checkpoint.pb.h"
#include "proto/tessera.pb.h"

namespace tessera::fuzz {
namespace {

std::vector<Frame> SplitFrames(const uint8_t* data, size_t size) {
  std::vector<Frame> frames;
  size_t at = 0;
  while (at + 4 <= size && frames.size() < 8) {
    uint32_t length = 0;
    std::memcpy(&length, data + at, 4);
    at += 4;
    const size_t take = std::min<size_t>(length, size - at);
    frames.push_back(Frame::Wrap(nullptr, data + at, take));
    at += take;
  }
  return frames;
}

void CheckEscaped(const std::string& untrusted) {
  TS_FUZZ_CHECK(IsValidUtf8(EscapeUntrusted(untrusted)));
}

template <typename Body>
bool ParsesAs(const Message& m, Body* body) {
  return ParseControlBody(m, body).ok();
}

void CheckControlBodies(const Message& m) {
  proto::RegisterRequest reg;
  if (ParsesAs(m, &reg)) CheckEscaped(reg.endpoint() + reg.host());
  proto::ClusterInfo info;
  if (ParsesAs(m, &info)) {
    StatusOr<ShardMap> map = ShardMap::FromProto(info.shard_map());
    if (map.ok()) {
      // FromProto vouches for a full cover with ranks in range: every slot has an owner.
      for (uint32_t slot = 0; slot < kNumSlots; slot += 97) {
        const int owner = map->ServerOfSlot(slot);
        TS_FUZZ_CHECK(owner >= 0 && owner < map->num_servers());
      }
      TS_FUZZ_CHECK(ShardMap::FromProto(map->ToProto()).ok());
    }
    for (const auto& peer : info.peers()) CheckEscaped(peer.endpoint() + peer.host());
  }
  proto::ReduceRequest reduce;
  (void)ParsesAs(m, &reduce);
  proto::ReduceReply reduce_reply;
  (void)ParsesAs(m, &reduce_reply);
  proto::AbortNotice abort;
  if (ParsesAs(m, &abort)) CheckEscaped(abort.reason());
  proto::CheckpointRequest checkpoint;
  if (ParsesAs(m, &checkpoint)) {
    CheckEscaped(checkpoint.dir());
    for (const auto& f : checkpoint.files()) CheckEscaped(f.name());
  }
  proto::CheckpointReply checkpoint_reply;
  if (ParsesAs(m, &checkpoint_reply)) CheckEscaped(checkpoint_reply.path());
  proto::Heartbeat heartbeat;
  (void)ParsesAs(m, &heartbeat);
  proto::SignalNotice signal;
  (void)ParsesAs(m, &signal);
}

// After ValidateKeyValueMessage: every key and value the header announces is there, aligned.
void ReadValidatedFrames(const Message& m, const TableLayout& layout) {
  const proto::Header& h = m.header;
  if (h.is_reply() && h.status_code() != 0) return;
  const bool has_keys = !h.is_reply();
  const bool has_values = h.command() == proto::COMMAND_PUSH ? !h.is_reply() : h.is_reply();
  size_t index = 0;
  uint64_t sum = 0;
  if (has_keys) {
    const Frame& keys = m.frames.at(index++);
    TS_FUZZ_CHECK(keys.IsAligned(alignof(uint64_t)));
    TS_FUZZ_CHECK(keys.count<uint64_t>() == TotalKeys(h));
    for (size_t i = 0; i < keys.count<uint64_t>(); ++i) sum += keys.as<uint64_t>()[i];
  }
  if (has_values) {
    const Frame& values = m.frames.at(index++);
    TS_FUZZ_CHECK(values.IsAligned(alignof(float)));
    TS_FUZZ_CHECK(values.count<float>() == TotalValueFloats(h, layout));
    uint32_t bits = 0;
    for (size_t i = 0; i < values.count<float>(); ++i) {
      std::memcpy(&bits, values.as<float>() + i, 4);
      sum += bits;
    }
  }
  TS_FUZZ_CHECK(index == m.frames.size());
  volatile uint64_t sink = sum;
  (void)sink;
}

}  // namespace
}  // namespace tessera::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  // protobuf logs every string field with invalid UTF-8 it refuses: one line per such input.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  std::vector<Frame> frames = fuzz::SplitFrames(data, size);
  if (frames.empty()) return 0;
  Message m;
  if (!DecodeProto(frames[0], &m.header).ok()) return 0;
  m.frames.assign(frames.begin() + 1, frames.end());
  TS_FUZZ_CHECK(fuzz::IsValidUtf8(EscapeUntrusted(m.DebugString())));
  fuzz::CheckEscaped(m.header.status_message());

  // Tables 0..3 of widths 8, 1, 0 (no such table) and 16.
  TableLayout layout;
  layout.dims = {8, 1, 0, 16};
  Message validated = m;
  if (ValidateKeyValueMessage(layout, &validated).ok()) {
    fuzz::ReadValidatedFrames(validated, layout);
  }
  fuzz::CheckControlBodies(m);
  return 0;
}

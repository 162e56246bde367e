#include "core/message.h"

#include <google/protobuf/message_lite.h>
#include <malloc.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <tuple>
#include <vector>

#include "core/escape.h"
#include "core/mutex.h"
#include "core/shared_frames.h"

namespace tessera {
namespace {

// Large frames (a step's pull reply and gradients, megabytes each, allocated and freed every step)
// are kept for reuse when freed. The allocator would unmap a freed multi-megabyte block and map a
// fresh one for the next step, whose first touch page-faults and zeroes every 4 KiB page: perf
// put 11 % of an in-process MF run in the kernel's clear_page. Blocks come in power-of-two sizes
// so that the next step's slightly different size finds one; at most kMaxCachedBytes are kept.
class BlockCache {
 public:
  static constexpr size_t kMinBytes = size_t{256} << 10;  // smaller blocks: the allocator's
  static constexpr size_t kMaxBytes = size_t{1} << 30;    // larger ones: not cached
  static constexpr size_t kMaxCachedBytes = size_t{256} << 20;

  static bool Caches(size_t bytes) { return bytes > kMinBytes && bytes <= kMaxBytes; }
  // The smallest class whose blocks (kMinBytes << class) hold `bytes`. REQUIRES: Caches(bytes).
  static int ClassOf(size_t bytes) {
    int cls = 0;
    while ((kMinBytes << cls) < bytes) ++cls;
    return cls;
  }

  // A 64-byte aligned block of class `cls`, or {nullptr, false} when memory is exhausted. With
  // `shared`, the block is in shared memory (shared_frames.h) when the system allows; the second
  // member says whether it is.
  std::pair<void*, bool> Get(int cls, bool shared) {
    {
      MutexLock lock(&mu_);
      std::vector<void*>& list = free_[shared][cls];
      if (!list.empty()) {
        void* block = list.back();
        list.pop_back();
        cached_bytes_ -= kMinBytes << cls;
        return {block, shared};
      }
    }
    if (shared) {
      if (void* block = shared_frames::AllocateBlock(kMinBytes << cls)) return {block, true};
    }
    return {std::aligned_alloc(64, kMinBytes << cls), false};
  }

  void Put(void* block, int cls, bool shared) {
    {
      MutexLock lock(&mu_);
      if (cached_bytes_ + (kMinBytes << cls) <= kMaxCachedBytes) {
        free_[shared][cls].push_back(block);
        cached_bytes_ += kMinBytes << cls;
        return;
      }
    }
    if (shared) {
      shared_frames::FreeBlock(block);
    } else {
      std::free(block);
    }
  }

 private:
  static constexpr int kClasses = 13;  // kMinBytes << 12 == kMaxBytes
  Mutex mu_;
  std::vector<void*> free_[2][kClasses] TS_GUARDED_BY(mu_);  // [shared][class]
  size_t cached_bytes_ TS_GUARDED_BY(mu_) = 0;
};

// Never destroyed: frames may be freed by threads that outlive static destruction.
BlockCache& Cache() {
  static BlockCache* cache = new BlockCache;
  return *cache;
}

}  // namespace

Frame Frame::Allocate(size_t size, void** writable) {
  const size_t rounded = size == 0 ? 64 : (size + 63) / 64 * 64;
  void* block = nullptr;
  std::shared_ptr<const void> owner;
  if (BlockCache::Caches(rounded)) {
    const int cls = BlockCache::ClassOf(rounded);
    bool shared = false;
    std::tie(block, shared) = Cache().Get(cls, shared_frames::Enabled());
    if (block == nullptr) throw std::bad_alloc();
    owner.reset(block,
                [cls, shared](const void* p) { Cache().Put(const_cast<void*>(p), cls, shared); });
  } else {
    block = std::aligned_alloc(64, rounded);
    if (block == nullptr) throw std::bad_alloc();
    owner.reset(block, [](const void* p) { std::free(const_cast<void*>(p)); });
  }
  *writable = block;
  return Frame(std::move(owner), block, size);
}

void KeepLargeBuffersInHeap() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

Frame Frame::Copy(const void* data, size_t size) {
  void* block = nullptr;
  Frame frame = Allocate(size, &block);
  if (size > 0) std::memcpy(block, data, size);
  return frame;
}

std::string Message::DebugString() const {
  std::ostringstream out;
  out << proto::Command_Name(header.command()) << (header.is_reply() ? " reply" : "") << " #"
      << header.request_id() << " from role " << header.sender().role() << " rank "
      << header.sender().rank() << " clock " << header.clock() << ", " << header.tables_size()
      << " table(s), " << frames.size() << " frame(s) [";
  for (size_t i = 0; i < frames.size(); ++i) out << (i ? " " : "") << frames[i].size() << " B";
  out << "]";
  if (header.status_code() != 0)
    out << " status " << header.status_code() << " " << EscapeUntrusted(header.status_message());
  return out.str();
}

Frame EncodeProto(const google::protobuf::MessageLite& message) {
  std::string bytes = message.SerializeAsString();
  return Frame::Copy(bytes.data(), bytes.size());
}

Status DecodeProto(const void* data, size_t size, google::protobuf::MessageLite* message) {
  if (size > static_cast<size_t>(INT32_MAX)) {
    return Status::DataLoss("protobuf frame too large: " + std::to_string(size) + " bytes");
  }
  if (!message->ParseFromArray(data, static_cast<int>(size))) {
    return Status::DataLoss("cannot parse " + message->GetTypeName() + " from " +
                            std::to_string(size) + " bytes");
  }
  return OkStatus();
}

Status DecodeProto(const Frame& frame, google::protobuf::MessageLite* message) {
  return DecodeProto(frame.data(), frame.size(), message);
}

Message MakeControlMessage(proto::Command command, const google::protobuf::MessageLite& body) {
  Message m;
  m.header.set_command(command);
  m.frames.push_back(EncodeProto(body));
  return m;
}

Status ParseControlBody(const Message& message, google::protobuf::MessageLite* body) {
  if (message.frames.size() != 1) {
    return Status::InvalidArgument(proto::Command_Name(message.header.command()) +
                                   " expects 1 body frame, got " +
                                   std::to_string(message.frames.size()));
  }
  return DecodeProto(message.frames[0], body);
}

uint64_t TotalKeys(const proto::Header& header) {
  uint64_t total = 0;
  for (const auto& t : header.tables()) total += t.num_keys();
  return total;
}

uint64_t TotalValueFloats(const proto::Header& header, const TableLayout& layout) {
  uint64_t total = 0;
  for (const auto& t : header.tables()) {
    total += t.num_keys() * static_cast<uint64_t>(layout.DimOf(t.table_id()));
  }
  return total;
}

Status ValidateKeyValueMessage(const TableLayout& layout, Message* message) {
  const proto::Header& h = message->header;
  const bool is_pull = h.command() == proto::COMMAND_PULL;
  const bool is_push = h.command() == proto::COMMAND_PUSH;
  if (!is_pull && !is_push) {
    return Status::InvalidArgument("not a key/value command: " + proto::Command_Name(h.command()));
  }
  if (h.is_reply() && h.status_code() != 0) return OkStatus();  // an error reply carries no data
  constexpr uint64_t kMaxKeys = uint64_t{1} << 32;
  uint64_t total_keys = 0;
  uint64_t total_floats = 0;
  for (const auto& t : h.tables()) {
    int dim = layout.DimOf(t.table_id());
    if (dim <= 0)
      return Status::InvalidArgument("unknown table id " + std::to_string(t.table_id()));
    if (t.num_keys() > kMaxKeys) {
      return Status::InvalidArgument("table " + std::to_string(t.table_id()) + " claims " +
                                     std::to_string(t.num_keys()) + " keys");
    }
    total_keys += t.num_keys();
    total_floats += t.num_keys() * static_cast<uint64_t>(dim);
  }
  const bool has_values = is_push ? !h.is_reply() : h.is_reply();
  const bool has_keys = !h.is_reply();
  const size_t expected_frames = (has_keys ? 1 : 0) + (has_values ? 1 : 0);
  if (expected_frames == 0) {
    if (!message->frames.empty()) {
      return Status::InvalidArgument(
          "PUSH reply carries " + std::to_string(message->frames.size()) + " unexpected frame(s)");
    }
    return OkStatus();
  }
  if (message->frames.size() != expected_frames) {
    return Status::InvalidArgument(proto::Command_Name(h.command()) +
                                   (h.is_reply() ? " reply" : "") + " expects " +
                                   std::to_string(expected_frames) + " frame(s), got " +
                                   std::to_string(message->frames.size()));
  }
  if (has_values && h.dtype() != proto::DTYPE_FLOAT32) {
    return Status::InvalidArgument("unsupported value dtype " + proto::DType_Name(h.dtype()));
  }
  size_t index = 0;
  if (has_keys) {
    Frame& keys = message->frames[index++];
    if (keys.size() != total_keys * sizeof(uint64_t)) {
      return Status::InvalidArgument("key frame has " + std::to_string(keys.size()) +
                                     " bytes, header says " + std::to_string(total_keys) +
                                     " keys (" + std::to_string(total_keys * 8) + " bytes)");
    }
    keys = keys.Aligned(alignof(uint64_t));
  }
  if (has_values) {
    Frame& values = message->frames[index++];
    if (values.size() != total_floats * sizeof(float)) {
      return Status::InvalidArgument("value frame has " + std::to_string(values.size()) +
                                     " bytes, header implies " + std::to_string(total_floats) +
                                     " floats (" + std::to_string(total_floats * 4) + " bytes)");
    }
    values = values.Aligned(alignof(uint64_t));
  }
  return OkStatus();
}

}  // namespace tessera

// Message: what nodes send each other. A protobuf Header plus frames of raw bytes.
//
// Frames are reference-counted and immutable once built: copying a Message or handing it to a
// transport shares the bytes. The in-process transport passes Messages as they are; the ZeroMQ
// transport encodes the header as frame 0 and sends large frames without copying them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "proto/tessera.pb.h"

namespace google::protobuf {
class MessageLite;
}

namespace tessera {

// A read-only block of bytes kept alive by a shared owner.
class Frame {
 public:
  Frame() = default;
  // Copies `size` bytes into a new 64-byte aligned block.
  static Frame Copy(const void* data, size_t size);
  // Allocates a 64-byte aligned block of `size` bytes and returns it with a pointer the caller may
  // write to until the Frame is handed to anyone else.
  static Frame Allocate(size_t size, void** writable);
  // Takes ownership of a vector's storage (no copy).
  template <typename T>
  static Frame FromVector(std::vector<T>&& v) {
    auto owner = std::make_shared<std::vector<T>>(std::move(v));
    const void* data = owner->data();
    size_t size = owner->size() * sizeof(T);
    return Frame(std::shared_ptr<const void>(owner, data), data, size);
  }
  // Wraps bytes kept alive by `owner`.
  static Frame Wrap(std::shared_ptr<const void> owner, const void* data, size_t size) {
    return Frame(std::move(owner), data, size);
  }

  const void* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  template <typename T>
  size_t count() const {
    return size_ / sizeof(T);
  }
  // True when data() is a multiple of `alignment`.
  bool IsAligned(size_t alignment) const {
    return reinterpret_cast<uintptr_t>(data_) % alignment == 0;
  }
  // This frame if aligned to `alignment`, else an aligned copy.
  Frame Aligned(size_t alignment) const {
    return IsAligned(alignment) ? *this : Copy(data_, size_);
  }
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  Frame(std::shared_ptr<const void> owner, const void* data, size_t size)
      : owner_(std::move(owner)), data_(data), size_(size) {}

  std::shared_ptr<const void> owner_;
  const void* data_ = nullptr;
  size_t size_ = 0;
};

// Message buffers of a few MiB come and go every step (libzmq's receive buffers, frames outside
// the frame cache): keeps glibc from returning them to the kernel and page-faulting them back in
// each time (PERFORMANCE.md, proposal 4). Call once at the start of main, before any thread.
void KeepLargeBuffersInHeap();

struct Message {
  proto::Header header;
  std::vector<Frame> frames;

  // "PULL #12 from worker:0 clock 3, 2 tables, 1 frame(s) [8192 B]" for logs.
  std::string DebugString() const;
};

// Protobuf <-> Frame for headers and control bodies. Decoding failures are kDataLoss.
Frame EncodeProto(const google::protobuf::MessageLite& message);
Status DecodeProto(const void* data, size_t size, google::protobuf::MessageLite* message);
Status DecodeProto(const Frame& frame, google::protobuf::MessageLite* message);

// Builds a control message: header with `command`, one body frame.
Message MakeControlMessage(proto::Command command, const google::protobuf::MessageLite& body);
// Parses the body frame of a control message (exactly one frame).
Status ParseControlBody(const Message& message, google::protobuf::MessageLite* body);

// What a node knows about the tables a key/value message may name: table id -> row width
// (floats per key in a value frame); 0 means "no such table".
struct TableLayout {
  std::vector<int> dims;
  int DimOf(uint32_t table_id) const { return table_id < dims.size() ? dims[table_id] : 0; }
};

// Checks a PULL/PUSH request or a PULL reply against its header before anyone touches the data:
// known command, known tables, frame count, key frame = 8 x sum(num_keys) bytes, value frame =
// 4 x sum(num_keys x dim) bytes, dtype float32. On success the frames are 8-byte aligned (copied
// if a transport delivered them unaligned). Returns kInvalidArgument naming what is wrong.
Status ValidateKeyValueMessage(const TableLayout& layout, Message* message);

// Total keys over the header's tables, and total value floats given the layout.
uint64_t TotalKeys(const proto::Header& header);
uint64_t TotalValueFloats(const proto::Header& header, const TableLayout& layout);

}  // namespace tessera

// Large frames in shared memory, for peers on the same host.
//
// Over TCP loopback a step's pull reply and gradients (megabytes each) are copied four times:
// into the sender's socket buffer, out of it into the receiver's, and by ZeroMQ on both sides;
// on two cores those copies, not the math, set the pace of a one-host mpirun job. Once
// Enable(true) is called, Frame::Allocate places large frames (more than 256 KiB, the frame
// cache's blocks) in memfd-backed shared memory. A ZmqTransport with `shared_memory` set then
// sends such a frame as a descriptor (the sender's pid, the block's fd, inode and id) instead of
// its bytes; the receiver maps the block read-only through /proc/<pid>/fd/<fd> and hands the
// bytes to its handler without a copy. The sender keeps the frame until the receiver says it has
// dropped it (COMMAND_RELEASE). The receiver trusts a descriptor only as far as it can check it:
// the pid must be the one its (authenticated) sender has (core/zmq_transport.h), and the file
// must be a memfd named "tessera-frame" of the stated inode and size; the message names no path.
//
// Frames stay immutable: nobody writes to a block while a frame of it is alive, on either side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <optional>

#include "core/status.h"

namespace tessera::shared_frames {

// Turns shared allocation of large frames on or off for this process (blocks allocated before a
// change keep their kind). Off by default.
void Enable(bool on);
bool Enabled();

// A shared block as the process that allocated it sees it.
struct BlockInfo {
  int fd = -1;            // the memfd, open for the block's lifetime
  uint64_t block_id = 0;  // unique within the process, never reused
  uint64_t inode = 0;     // the memfd's inode (a receiver checks it names the same file)
  size_t bytes = 0;       // the block's size (a multiple of the page size)
  const char* base = nullptr;
};

// The shared block that holds [data, data + size), if one does.
std::optional<BlockInfo> Find(const void* data, size_t size);

// A block of `bytes` (page-aligned, a multiple of the page size) in fresh shared memory, or
// nullptr when the system refuses (no memfd, out of descriptors or memory) or 256 blocks are
// live already: the caller then falls back to ordinary memory. Free with FreeBlock.
void* AllocateBlock(size_t bytes);
void FreeBlock(void* block);

// Shared blocks of this process now allocated (cached or in use).
int64_t LiveBlocks();

// A peer's block mapped read-only into this process; unmapped when the last reference goes.
class Mapping {
 public:
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const char* base() const { return base_; }
  size_t bytes() const { return bytes_; }

 private:
  friend class MappingCache;
  Mapping(const char* base, size_t bytes) : base_(base), bytes_(bytes) {}
  const char* base_;
  size_t bytes_;
};

// What a receiver knows of a peer's block from a descriptor.
struct RemoteBlock {
  int pid = 0;
  int fd = -1;
  uint64_t block_id = 0;
  uint64_t inode = 0;
  uint64_t bytes = 0;
};

// Mappings of peers' blocks, kept for reuse: a sender's frame cache hands out the same few blocks
// step after step, and mapping one costs a page fault per page on first touch. At most
// `max_bytes` of mappings are kept (least recently used go first; frames still holding one keep
// it alive). Not thread-safe: one owner (a transport's I/O thread).
class MappingCache {
 public:
  explicit MappingCache(size_t max_bytes) : max_bytes_(max_bytes) {}
  // Maps the block, checking that the descriptor names a Tessera memfd ("tessera-frame") of the
  // stated inode and size.
  StatusOr<std::shared_ptr<const Mapping>> Map(const RemoteBlock& block);
  size_t cached_bytes() const { return cached_bytes_; }

 private:
  using Key = std::pair<int, uint64_t>;  // (pid, block id)
  struct Entry {
    std::shared_ptr<const Mapping> mapping;
    std::list<Key>::iterator lru;
  };
  size_t max_bytes_;
  size_t cached_bytes_ = 0;
  std::map<Key, Entry> entries_;
  std::list<Key> lru_;  // most recently used first
};

}  // namespace tessera::shared_frames

#include "core/shared_frames.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/mutex.h"

namespace tessera::shared_frames {
namespace {

std::atomic<bool> enabled{false};

// Every shared block of this process, by base address. Never destroyed: frames may be freed by
// threads that outlive static destruction.
class Registry {
 public:
  void Add(const BlockInfo& info) {
    MutexLock lock(&mu_);
    blocks_[reinterpret_cast<uintptr_t>(info.base)] = info;
  }
  std::optional<BlockInfo> Remove(const void* base) {
    MutexLock lock(&mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(base));
    if (it == blocks_.end()) return std::nullopt;
    BlockInfo info = it->second;
    blocks_.erase(it);
    return info;
  }
  std::optional<BlockInfo> Find(const void* data, size_t size) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(data);
    MutexLock lock(&mu_);
    auto it = blocks_.upper_bound(begin);
    if (it == blocks_.begin()) return std::nullopt;
    --it;
    const uintptr_t base = it->first;
    if (begin - base > it->second.bytes || size > it->second.bytes - (begin - base))
      return std::nullopt;
    return it->second;
  }
  int64_t size() {
    MutexLock lock(&mu_);
    return static_cast<int64_t>(blocks_.size());
  }

 private:
  Mutex mu_;
  std::map<uintptr_t, BlockInfo> blocks_ TS_GUARDED_BY(mu_);
};

Registry& Blocks() {
  static Registry* registry = new Registry;
  return *registry;
}

std::atomic<uint64_t> next_block_id{1};

// Each block holds a descriptor for its lifetime; past this many, new blocks are ordinary memory
// so that shared frames never starve sockets and files of descriptors (soft limits of 1024 are
// common). A step of a job uses a handful of blocks, which the frame cache hands out again.
constexpr int64_t kMaxLiveBlocks = 256;

// The name every block's memfd carries; a receiver maps only files of this name.
constexpr char kMemfdName[] = "tessera-frame";

// Whether `fd` (open in this process) is a memfd named kMemfdName: /proc shows it as
// "/memfd:tessera-frame (deleted)".
bool IsTesseraMemfd(int fd) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[256];
  const ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
  if (n < 0) return false;
  const std::string expected = std::string("/memfd:") + kMemfdName + " ";
  return static_cast<size_t>(n) >= expected.size() &&
         std::memcmp(target, expected.data(), expected.size()) == 0;
}

}  // namespace

void Enable(bool on) { enabled.store(on); }
bool Enabled() { return enabled.load(); }

std::optional<BlockInfo> Find(const void* data, size_t size) { return Blocks().Find(data, size); }

int64_t LiveBlocks() { return Blocks().size(); }

void* AllocateBlock(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  bytes = (bytes + page - 1) / page * page;
  if (Blocks().size() >= kMaxLiveBlocks) return nullptr;
  const int fd = memfd_create(kMemfdName, MFD_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st;
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0 || fstat(fd, &st) != 0) {
    close(fd);
    return nullptr;
  }
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    close(fd);
    return nullptr;
  }
  BlockInfo info;
  info.fd = fd;
  info.block_id = next_block_id.fetch_add(1);
  info.inode = static_cast<uint64_t>(st.st_ino);
  info.bytes = bytes;
  info.base = static_cast<const char*>(base);
  Blocks().Add(info);
  return base;
}

void FreeBlock(void* block) {
  std::optional<BlockInfo> info = Blocks().Remove(block);
  if (!info) return;
  munmap(block, info->bytes);
  close(info->fd);
}

Mapping::~Mapping() { munmap(const_cast<char*>(base_), bytes_); }

StatusOr<std::shared_ptr<const Mapping>> MappingCache::Map(const RemoteBlock& block) {
  const Key key{block.pid, block.block_id};
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    if (it->second.mapping->bytes() != block.bytes) {
      return Status::InvalidArgument("shared block " + std::to_string(block.block_id) + " of pid " +
                                     std::to_string(block.pid) + " changed size");
    }
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.mapping;
  }
  const std::string path = "/proc/" + std::to_string(block.pid) + "/fd/" + std::to_string(block.fd);
  if (block.pid <= 0 || block.fd < 0 || block.bytes == 0) {
    return Status::InvalidArgument("bad shared block descriptor (" + path + ", " +
                                   std::to_string(block.bytes) + " bytes)");
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::Unavailable("cannot open " + path + ": " + std::strerror(errno));
  }
  struct stat st;
  if (!IsTesseraMemfd(fd)) {
    close(fd);
    return Status::InvalidArgument(path + " is not a Tessera shared block (not a memfd named " +
                                   kMemfdName + ")");
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_ino) != block.inode ||
      static_cast<uint64_t>(st.st_size) != block.bytes) {
    close(fd);
    return Status::InvalidArgument(path + " is not the shared block described (inode " +
                                   std::to_string(block.inode) + ", " +
                                   std::to_string(block.bytes) + " bytes)");
  }
  void* base = mmap(nullptr, block.bytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);  // the mapping keeps the file
  if (base == MAP_FAILED) {
    return Status::Unavailable("cannot map " + path + ": " + std::strerror(errno));
  }
  std::shared_ptr<const Mapping> mapping(new Mapping(static_cast<const char*>(base), block.bytes));
  lru_.push_front(key);
  entries_[key] = Entry{mapping, lru_.begin()};
  cached_bytes_ += block.bytes;
  while (cached_bytes_ > max_bytes_ && lru_.size() > 1) {
    auto victim = entries_.find(lru_.back());
    cached_bytes_ -= victim->second.mapping->bytes();
    entries_.erase(victim);
    lru_.pop_back();
  }
  return mapping;
}

}  // namespace tessera::shared_frames

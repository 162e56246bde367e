#include "launch/shared_memory_probe.h"

#include <mpi.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/logging.h"
#include "core/message.h"
#include "core/shared_frames.h"

namespace tessera::launch {
namespace {

// What a rank tells the others about its probe block: the descriptor a receiving transport maps
// (gathered as bytes; pid 0: no block).
using SharedProbe = shared_frames::RemoteBlock;

constexpr size_t kProbeWords = (size_t{512} << 10) / sizeof(uint32_t);

uint32_t ProbeWord(int rank, size_t i) {
  return static_cast<uint32_t>(rank) * 2654435761u + static_cast<uint32_t>(i);
}

// A frame in shared memory holding rank's pattern, and its descriptor; turns shared allocation on.
Frame MakeProbeFrame(int rank, SharedProbe* probe, std::string* why) {
  shared_frames::Enable(true);
  void* out = nullptr;
  Frame frame = Frame::Allocate(kProbeWords * sizeof(uint32_t), &out);
  for (size_t i = 0; i < kProbeWords; ++i) static_cast<uint32_t*>(out)[i] = ProbeWord(rank, i);
  auto block = shared_frames::Find(frame.data(), frame.size());
  if (!block || block->base != frame.data()) {
    *why = "this system refused a memfd block";
    return frame;
  }
  probe->pid = static_cast<int>(getpid());
  probe->fd = block->fd;
  probe->block_id = block->block_id;
  probe->inode = block->inode;
  probe->bytes = block->bytes;
  return frame;
}

// Maps another rank's probe block and checks its pattern; "" when it worked, else why not.
std::string CheckProbe(int rank, const SharedProbe& probe, shared_frames::MappingCache* cache) {
  if (probe.pid == 0) return "";  // that rank has no block and says so itself
  auto mapping = cache->Map(probe);
  if (!mapping.ok()) return mapping.status().message();
  const auto* words = reinterpret_cast<const uint32_t*>((*mapping)->base());
  for (size_t i = 0; i < kProbeWords; ++i) {
    if (words[i] != ProbeWord(rank, i)) return "rank " + std::to_string(rank) + "'s block differs";
  }
  return "";
}

}  // namespace

// --shared-memory auto in one process: the transports map this process's own blocks.
bool SharedMemoryWorksInProcess() {
  SharedProbe probe;
  std::string why;
  Frame frame = MakeProbeFrame(0, &probe, &why);
  shared_frames::MappingCache cache(probe.bytes);
  if (why.empty()) why = probe.pid == 0 ? "no block" : CheckProbe(0, probe, &cache);
  if (!why.empty()) {
    shared_frames::Enable(false);
    TS_LOG(WARNING) << "shared memory for large frames is off (" << why
                    << "): they go through the sockets";
    return false;
  }
  return true;
}

// --shared-memory auto under mpirun on one host (collective): every rank maps every other rank's
// probe block. On only if all of them could; a rank that could not says why.
bool SharedMemoryWorksAcrossRanks(int rank, int size) {
  SharedProbe mine;
  std::string why;
  Frame frame = MakeProbeFrame(rank, &mine, &why);
  std::vector<SharedProbe> all(size);
  MPI_Allgather(&mine, sizeof(SharedProbe), MPI_BYTE, all.data(), sizeof(SharedProbe), MPI_BYTE,
                MPI_COMM_WORLD);
  shared_frames::MappingCache cache(SIZE_MAX);
  int ok = mine.pid != 0 ? 1 : 0;
  for (int r = 0; r < size && why.empty(); ++r) {
    if (all[r].pid == 0) ok = 0;
    if (r != rank) why = CheckProbe(r, all[r], &cache);
  }
  if (!why.empty()) ok = 0;
  MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!ok) {
    shared_frames::Enable(false);
    if (!why.empty()) {
      TS_LOG(WARNING) << "shared memory between ranks is off (" << why
                      << "): large frames go through TCP";
    }
  }
  return ok != 0;
}

}  // namespace tessera::launch

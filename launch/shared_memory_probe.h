// --shared-memory auto: whether large frames can travel as shared-memory descriptors here. Each
// probe allocates a real shared block, maps it the way a receiving transport would and checks its
// bytes; where that fails, shared allocation is turned off again and a warning says why.
#pragma once

namespace tessera::launch {

// In one process: the transports map this process's own blocks.
bool SharedMemoryWorksInProcess();

// Under mpirun on one host (collective: every rank calls it): every rank maps every other rank's
// probe block. True only if all of them could; a rank that could not says why.
bool SharedMemoryWorksAcrossRanks(int rank, int size);

}  // namespace tessera::launch

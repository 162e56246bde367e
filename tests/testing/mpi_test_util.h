// What the GoogleTest binaries run under mpirun share: the rank and size of MPI_COMM_WORLD. Their
// main() is tessera_mpi_test_main (mpi_test_main.cc). Header-only, test-only; call after MPI_Init.
#pragma once

#include <mpi.h>

namespace tessera::testing {

inline int WorldRank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int WorldSize() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

}  // namespace tessera::testing

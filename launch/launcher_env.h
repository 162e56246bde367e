// The one place that reads launcher environment variables (mpirun, Slurm/PMIx).
#pragma once

#include <string>

namespace tessera::launch {

struct LaunchEnv {
  bool under_mpi = false;  // started by mpirun or srun: MPI must be initialised
  std::string launcher;    // "mpirun", "srun (pmix)", or "" for a plain process
};

// Looks at OMPI_COMM_WORLD_SIZE (mpirun), PMIX_RANK (srun --mpi=pmix) and SLURM_NTASKS.
LaunchEnv DetectLaunchEnv();

}  // namespace tessera::launch

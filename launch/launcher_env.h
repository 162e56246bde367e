// The one place that reads launcher environment variables (mpirun, Slurm/PMIx), and the CUDA
// runtime's CUDA_VISIBLE_DEVICES (only reported: the runtime applies it itself).
#pragma once

#include <optional>
#include <string>

namespace tessera::launch {

struct LaunchEnv {
  bool under_mpi = false;  // started by mpirun or srun: MPI must be initialised
  std::string launcher;    // "mpirun", "srun (pmix)", or "" for a plain process
  // This process's rank among the ranks on its host: OMPI_COMM_WORLD_LOCAL_RANK (mpirun), else
  // SLURM_LOCALID (srun); -1 when neither is set (launch/job.cc then orders by world rank).
  int local_rank = -1;
  std::optional<std::string> cuda_visible_devices;  // CUDA_VISIBLE_DEVICES when set
};

// Looks at OMPI_COMM_WORLD_SIZE (mpirun), PMIX_RANK (srun --mpi=pmix) and SLURM_NTASKS, the
// local-rank variables and CUDA_VISIBLE_DEVICES.
LaunchEnv DetectLaunchEnv();

}  // namespace tessera::launch

#include "launch/launcher_env.h"

#include <cstdlib>

namespace tessera::launch {

LaunchEnv DetectLaunchEnv() {
  LaunchEnv env;
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) {
    env.under_mpi = true;
    env.launcher = "mpirun";
  } else if (std::getenv("PMIX_RANK") != nullptr) {
    env.under_mpi = true;
    env.launcher = "srun (pmix)";
  } else if (const char* tasks = std::getenv("SLURM_NTASKS");
             tasks != nullptr && std::atoi(tasks) > 1 && std::getenv("SLURM_PROCID") != nullptr) {
    env.under_mpi = true;
    env.launcher = "srun";
  }
  return env;
}

}  // namespace tessera::launch

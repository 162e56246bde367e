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
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"}) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') continue;
    char* end = nullptr;
    const long rank = std::strtol(value, &end, 10);
    if (*end == '\0' && rank >= 0 && rank < (1 << 20)) {
      env.local_rank = static_cast<int>(rank);
      break;
    }
  }
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"); visible != nullptr) {
    env.cuda_visible_devices = visible;
  }
  return env;
}

}  // namespace tessera::launch

// Runs a training job: every role as threads of this process, or this process's role under MPI.
// Both paths build the same nodes (scheduler, servers, workers) and run the same code; they
// differ only in how transports are created and addresses exchanged.
#pragma once

#include "core/status.h"
#include "launch/flags.h"
#include "launch/launcher_env.h"

namespace tessera::launch {

// One process: 1 scheduler + options.servers servers + options.workers workers as threads.
// Returns the first failure (the root cause, not the aborts it caused elsewhere).
// `env` says which CUDA devices are visible (reported in the workers' device lines).
Status RunTrainInProcess(const TrainOptions& options, const LaunchEnv& env);

// Under mpirun/srun: rank 0 is the scheduler, ranks 1..S the servers, the rest workers.
// MPI carries only the bootstrap (each rank's ZeroMQ address).
// *reported is set when the failure was already printed as this process's error line (when it
// reached this process from the scheduler or a lost peer).
Status RunTrainMpi(const TrainOptions& options, const LaunchEnv& env, bool* reported);

}  // namespace tessera::launch

// The worker's half of "finite by construction" (the server checks the rows each push updated,
// server/shard.h): before a step's push leaves, its loss and its sparse gradients must be finite.
// On CUDA the gradients are the downloaded push frame and the loss the downloaded sum, so the
// check reads host memory on every device and costs one scan of what the step just wrote.
// Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tessera::worker {

// `step` is the 1-based number of the step (the BSP clock it pushes at, plus one). grads[t] holds
// unique_keys[t].size() x dims[t] floats, table t's row gradients in unique-key order.
// OK, or Status::NonFinite naming the step, the table and the key of the first non-finite
// gradient ("non-finite model at step 12: table 1, key 4711: the gradient is nan"), tables in
// order; with every gradient finite, a non-finite `loss` ("non-finite model at step 12: the
// training loss is inf, every gradient finite").
// REQUIRES: grads.size() == unique_keys.size() == dims.size().
Status CheckStepFinite(int64_t step, const std::vector<std::vector<uint64_t>>& unique_keys,
                       const std::vector<int>& dims, const std::vector<float*>& grads, double loss);

// "nan", "-nan", "inf" or "-inf" (or the number) for messages.
std::string FormatNonFinite(double value);

}  // namespace tessera::worker

#include "worker/finite_check.h"

#include <cmath>
#include <cstdio>

#include "kernels/finite.h"

namespace tessera::worker {

std::string FormatNonFinite(double value) {
  if (std::isnan(value)) return std::signbit(value) ? "-nan" : "nan";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", value);
  return buf;
}

Status CheckStepFinite(int64_t step, const std::vector<std::vector<uint64_t>>& unique_keys,
                       const std::vector<int>& dims, const std::vector<float*>& grads,
                       double loss) {
  const std::string where = "non-finite model at step " + std::to_string(step);
  for (size_t t = 0; t < grads.size(); ++t) {
    const int64_t n = static_cast<int64_t>(unique_keys[t].size()) * dims[t];
    if (n == 0) continue;
    const int64_t bad = kernels::FindNonFinite(grads[t], n);
    if (bad == n) continue;
    return Status::NonFinite(where + ": table " + std::to_string(t) + ", key " +
                             std::to_string(unique_keys[t][bad / dims[t]]) + ": the gradient is " +
                             FormatNonFinite(grads[t][bad]));
  }
  if (!std::isfinite(loss)) {
    return Status::NonFinite(where + ": the training loss is " + FormatNonFinite(loss) +
                             ", every gradient finite");
  }
  return OkStatus();
}

}  // namespace tessera::worker

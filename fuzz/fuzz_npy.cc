// The .npy reader of `tessera recommend` (launch/npy.h), for both dtypes it reads. An array that
// reads has as many values as its shape's product; with one or two dimensions (what WriteNpy
// writes) it writes back to a file that reads back equal.
//
// Input: the file's bytes.
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "launch/npy.h"

namespace {

template <typename T>
void Check(const std::string& path) {
  std::vector<T> values;
  std::vector<int64_t> shape;
  if (!tessera::launch::ReadNpy(path, &values, &shape).ok()) return;
  uint64_t count = 1;
  for (int64_t d : shape) {
    TS_FUZZ_CHECK(d >= 0);
    count *= static_cast<uint64_t>(d);
  }
  TS_FUZZ_CHECK(count == values.size());
  if (shape.size() != 1 && shape.size() != 2) return;
  const std::string copy = tessera::fuzz::ScratchDir() + "/copy.npy";
  TS_FUZZ_CHECK(tessera::launch::WriteNpy(copy, values.data(), shape).ok());
  std::vector<T> again;
  std::vector<int64_t> again_shape;
  TS_FUZZ_CHECK(tessera::launch::ReadNpy(copy, &again, &again_shape).ok());
  TS_FUZZ_CHECK(again_shape == shape && again.size() == values.size());
  TS_FUZZ_CHECK(values.empty() ||
                std::memcmp(again.data(), values.data(), values.size() * sizeof(T)) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = tessera::fuzz::InputFile(data, size);
  Check<uint64_t>(path);
  Check<float>(path);
  return 0;
}

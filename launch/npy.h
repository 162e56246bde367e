// NumPy .npy files (format version 1.0), the arrays `tessera export` writes and
// `tessera recommend` reads: little-endian uint64 ('<u8') and float32 ('<f4'), C order, one or
// two dimensions. numpy.load reads them as they are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace tessera::launch {

Status WriteNpy(const std::string& path, const uint64_t* data, const std::vector<int64_t>& shape);
Status WriteNpy(const std::string& path, const float* data, const std::vector<int64_t>& shape);

// Reads an array written by WriteNpy (or numpy.save of the same dtype); *shape gets its shape.
// DataLoss naming the file when it is not such an array.
Status ReadNpy(const std::string& path, std::vector<uint64_t>* data, std::vector<int64_t>* shape);
Status ReadNpy(const std::string& path, std::vector<float>* data, std::vector<int64_t>* shape);

}  // namespace tessera::launch

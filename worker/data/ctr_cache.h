// Writes the binary cache of CTR training data (`tessera convert`): a text file read with
// CtrReader (worker/data/ctr_reader.h) and stored in the format of worker/data/ctr_cache_format.h,
// which CtrReader then reads several times faster than the text.
//
// Threads: thread-safe (no shared state); the reading uses the reader's threads.
#pragma once

#include <string>

#include "core/status.h"
#include "worker/data/ctr_cache_format.h"
#include "worker/data/ctr_reader.h"

namespace tessera::worker {

// Reads `input` (a text file, format/partition/threads/seed/bucketize from `read`) with CtrReader
// and writes its rows as a cache to `output` (via `output`.tmp, renamed when complete, so a
// failed conversion leaves no cache behind). Errors: those of CtrReader (bad lines unless
// read.skip_bad_lines), InvalidArgument when the input is a cache or multi-hot with lines of more
// than kCtrCacheMaxKeys features, and I/O errors on `output`.
Status WriteCtrCache(const std::string& input, const CtrReadOptions& read,
                     const std::string& output);

}  // namespace tessera::worker

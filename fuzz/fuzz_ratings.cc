// The rating file reader (worker/data/rating_reader.h): every format, with and without
// skip_bad_lines, 1 or 2 parser threads, and the file split into 1..3 partitions. Besides "no
// crash, no sanitizer report", the partitions must agree with the whole file: when every read
// succeeds, the partitions' ratings in order are exactly the whole file's, and their bad lines
// add up to its.
//
// Input: one options byte, then the file's bytes.
#include <cmath>

#include "fuzz/fuzz_util.h"
#include "worker/data/rating_reader.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tessera::fuzz::QuietLogs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::worker;
  if (size < 1) return 0;
  const uint8_t opts = data[0];
  const std::string path = tessera::fuzz::InputFile(data + 1, size - 1);
  static constexpr RatingFormat kFormats[] = {RatingFormat::kAuto, RatingFormat::kTab,
                                              RatingFormat::kDat, RatingFormat::kCsv,
                                              RatingFormat::kLibmf};
  RatingReadOptions options;
  options.format = kFormats[(opts & 7) % 5];
  options.skip_bad_lines = (opts & 8) != 0;
  // Two parser threads for 1 input in 16: starting and joining a thread costs more than a parse.
  options.num_threads = (opts & 0xF0) == 0xF0 ? 2 : 1;
  const int num_partitions = 1 + (opts >> 5) % 3;

  tessera::StatusOr<RatingReadResult> whole = ReadRatings(path, options);
  if (whole.ok()) {
    const RatingData& d = whole->data;
    TS_FUZZ_CHECK(d.users.size() == d.size() && d.items.size() == d.size());
    for (float r : d.ratings) TS_FUZZ_CHECK(std::isfinite(r));
    TS_FUZZ_CHECK(whole->format != RatingFormat::kAuto);
  } else {
    TS_FUZZ_CHECK(!whole.status().message().empty());
  }
  if (num_partitions == 1) return 0;

  RatingData joined;
  int64_t bad_lines = 0;
  options.num_partitions = num_partitions;
  for (int p = 0; p < num_partitions; ++p) {
    options.partition = p;
    tessera::StatusOr<RatingReadResult> part = ReadRatings(path, options);
    if (!part.ok()) {
      TS_FUZZ_CHECK(!whole.ok());  // a bad line of a partition is a bad line of the file
      return 0;
    }
    if (whole.ok()) TS_FUZZ_CHECK(part->format == whole->format);
    const RatingData& d = part->data;
    joined.users.insert(joined.users.end(), d.users.begin(), d.users.end());
    joined.items.insert(joined.items.end(), d.items.begin(), d.items.end());
    joined.ratings.insert(joined.ratings.end(), d.ratings.begin(), d.ratings.end());
    bad_lines += part->bad_lines;
  }
  // Every partition read: so must the whole file, with the same ratings and bad lines.
  TS_FUZZ_CHECK(whole.ok());
  TS_FUZZ_CHECK(bad_lines == whole->bad_lines);
  TS_FUZZ_CHECK(joined.users == whole->data.users);
  TS_FUZZ_CHECK(joined.items == whole->data.items);
  TS_FUZZ_CHECK(joined.ratings == whole->data.ratings);  // finite: == compares the values
  return 0;
}

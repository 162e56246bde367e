// Helpers of the CtrReader tests (ctr_reader_test.cc, ctr_text_formats_test.cc): a block split
// into comparable rows, whole-file reads that fail the test on error, and random Criteo and
// libsvm text. Test-only code: errors fail the calling test (gtest EXPECTs).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "core/status.h"
#include "tests/testing/test_util.h"
#include "worker/data/ctr_reader.h"

namespace tessera::worker::test_util {

// One row of a CtrBlock, for comparisons.
struct Row {
  float label = 0;
  std::vector<float> dense;
  std::vector<uint64_t> keys;
  std::vector<float> values;
  bool operator==(const Row& o) const {
    return label == o.label && dense == o.dense && keys == o.keys && values == o.values;
  }
};

std::ostream& operator<<(std::ostream& os, const Row& r);

// Splits a block into rows, checking its array sizes against the schema.
std::vector<Row> ToRows(const CtrBlock& b, const CtrSchema& schema);

// Read options of `format` with hash seed `seed`, the rest default.
CtrReadOptions Options(CtrFormat format = CtrFormat::kAuto, uint64_t seed = 0);

// Reads `path` whole; fails the test on error.
std::vector<Row> ReadRows(const std::string& path, const CtrReadOptions& options,
                          CtrSchema* schema_out = nullptr);

// Writes `text` to data.txt in `dir` and reads it whole.
std::vector<Row> ReadText(const ::tessera::testing::TempDir& dir, const std::string& text,
                          const CtrReadOptions& options, CtrSchema* schema = nullptr);

// The error of reading `text` whole, or OK.
Status ReadError(const std::string& path, const std::string& text, const CtrReadOptions& options);

// A Criteo line from its 40 fields.
std::string CriteoLine(const std::vector<std::string>& fields);

// label, 13 ints, 26 categoricals.
std::vector<std::string> CriteoFields(int label, std::vector<std::string> ints,
                                      std::vector<std::string> cats);

// `lines` random Criteo lines: missing values, negative ints, either case of hex.
std::string RandomCriteo(int lines, uint32_t seed);

// `lines` random libsvm lines with `fixed` features each, or 1..8 when fixed is 0.
std::string RandomLibsvm(int lines, int fixed, uint32_t seed);

}  // namespace tessera::worker::test_util

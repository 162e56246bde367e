// Small helpers shared by the unit tests: TS_ASSERT_OK, a scratch directory, whole-file
// read/write and the location of the shared sample data. Test-only code: failures to set up the
// test environment (cannot create a directory, cannot write a file) abort with TS_CHECK rather
// than return Status.
// Thread-compatible: every function is safe to call from any thread on distinct paths.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/status.h"

// Asserts that `expr` (a Status) is OK, printing the Status otherwise.
#define TS_ASSERT_OK(expr)                               \
  do {                                                   \
    ::tessera::Status ts_status = (expr);                \
    ASSERT_TRUE(ts_status.ok()) << ts_status.ToString(); \
  } while (0)

namespace tessera::testing {

// A fresh, empty directory under $TMPDIR (or /tmp when unset or empty), removed recursively
// with everything in it when the object is destroyed. Owns the directory on disk.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Absolute path of the directory, without a trailing '/'.
  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Join(const std::string& name) const;

 private:
  std::string path_;
};

// Writes `text` to `path` byte for byte (creates or truncates). Aborts on failure.
void WriteFile(const std::string& path, const std::string& text);
// Returns the bytes of `path`. Aborts when it cannot be read.
std::string ReadFile(const std::string& path);
// $TESSERA_SHARED_DATA when it names an existing directory, else "". Tests that need the shared
// sample data (MovieLens, Criteo, ...) call GTEST_SKIP() when this is empty.
std::string SharedDataDir();

}  // namespace tessera::testing

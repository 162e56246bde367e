// Helpers shared by the libFuzzer targets of fuzz/: inputs as files (the readers take paths), a
// scratch directory, a check that aborts (libFuzzer reports an abort as a crash, with the input)
// and a UTF-8 check for the strings that reach logs and protobuf. Single-threaded, as libFuzzer
// calls a target.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessera::fuzz {

// A finding: prints the condition and where, then aborts.
#define TS_FUZZ_CHECK(cond)                                        \
  do {                                                             \
    if (!(cond)) ::tessera::fuzz::Fail(__FILE__, __LINE__, #cond); \
  } while (0)
[[noreturn]] void Fail(const char* file, int line, const char* what);

// Silences Tessera's INFO and WARNING lines (a reader warns of skipped bad lines on every input).
void QuietLogs();

// The path of a file holding exactly `size` bytes of `data`. `slot` names one of a few files, so
// a target can hold several inputs at once; each call for a slot replaces that file's bytes.
// The files are memfds, reached through /proc/self/fd (no disk, nothing to clean up).
std::string InputFile(const uint8_t* data, size_t size, int slot = 0);

// A directory of this process under /dev/shm (else /tmp), created on first use and removed at
// exit, for readers that want a directory (a checkpoint) or write an output (the cache).
const std::string& ScratchDir();
// Writes `data` to `path` (replacing it); aborts on failure (the scratch space is ours).
void WriteFile(const std::string& path, const void* data, size_t size);
// The bytes of `path`; aborts when it cannot be read.
std::string ReadFile(const std::string& path);

// True when `s` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace tessera::fuzz

#include "fuzz/fuzz_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/logging.h"

namespace tessera::fuzz {

void Fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "TS_FUZZ_CHECK failed at %s:%d: %s\n", file, line, what);
  std::abort();
}

void QuietLogs() { logging::SetMinSeverity(logging::Severity::kError); }

std::string InputFile(const uint8_t* data, size_t size, int slot) {
  static int fds[4] = {-1, -1, -1, -1};
  TS_FUZZ_CHECK(slot >= 0 && slot < 4);
  if (fds[slot] < 0) {
    fds[slot] = memfd_create("tessera-fuzz-input", 0);
    TS_FUZZ_CHECK(fds[slot] >= 0);
  }
  const int fd = fds[slot];
  TS_FUZZ_CHECK(ftruncate(fd, 0) == 0);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    TS_FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

namespace {

std::string* scratch_dir = nullptr;

void RemoveScratchDir() {
  std::error_code ignored;
  if (scratch_dir != nullptr) std::filesystem::remove_all(*scratch_dir, ignored);
}

}  // namespace

const std::string& ScratchDir() {
  if (scratch_dir == nullptr) {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    scratch_dir = new std::string(std::string(base) + "/tessera-fuzz-" + std::to_string(getpid()));
    std::error_code ignored;
    std::filesystem::remove_all(*scratch_dir, ignored);
    TS_FUZZ_CHECK(mkdir(scratch_dir->c_str(), 0700) == 0);
    std::atexit(RemoveScratchDir);
  }
  return *scratch_dir;
}

void WriteFile(const std::string& path, const void* data, size_t size) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  TS_FUZZ_CHECK(fd >= 0);
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = write(fd, p + done, size - done);
    TS_FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  TS_FUZZ_CHECK(close(fd) == 0);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TS_FUZZ_CHECK(in.good());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;  // the sequence runs past the end
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += 1 + extra;
  }
  return true;
}

}  // namespace tessera::fuzz

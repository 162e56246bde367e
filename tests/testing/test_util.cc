#include "tests/testing/test_util.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "core/logging.h"

namespace tessera::testing {

TempDir::TempDir() {
  const char* env = std::getenv("TMPDIR");
  std::string base = (env != nullptr && env[0] != '\0') ? env : "/tmp";
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string pattern = base + "/tessera_test_XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  TS_CHECK(mkdtemp(buf.data()) != nullptr)
      << "mkdtemp(" << pattern << "): " << std::strerror(errno);
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  if (ec) TS_LOG(WARNING) << "cannot remove " << path_ << ": " << ec.message();
}

std::string TempDir::Join(const std::string& name) const { return path_ + "/" + name; }

void WriteFile(const std::string& path, const std::string& text) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  TS_CHECK(f != nullptr) << "open " << path << " for writing: " << std::strerror(errno);
  size_t written = std::fwrite(text.data(), 1, text.size(), f);
  int close_rc = std::fclose(f);
  TS_CHECK(written == text.size() && close_rc == 0) << "write " << path << " failed";
}

std::string ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  TS_CHECK(f != nullptr) << "open " << path << ": " << std::strerror(errno);
  std::string text;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  bool failed = std::ferror(f) != 0;
  std::fclose(f);
  TS_CHECK(!failed) << "read " << path << " failed";
  return text;
}

std::string SharedDataDir() {
  const char* env = std::getenv("TESSERA_SHARED_DATA");
  if (env == nullptr || env[0] == '\0') return "";
  std::error_code ec;
  return std::filesystem::is_directory(env, ec) ? std::string(env) : std::string();
}

}  // namespace tessera::testing

#include "core/logging.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace tessera::logging {
namespace {

std::atomic<int> g_verbosity{0};
std::atomic<int> g_min_severity{0};

std::string& TagStorage() {
  thread_local std::string tag = "main";
  return tag;
}

const char* Basename(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

}  // namespace

void SetThreadLogTag(const std::string& tag) { TagStorage() = tag; }
const std::string& ThreadLogTag() { return TagStorage(); }
void SetVerbosity(int level) { g_verbosity.store(level); }
int Verbosity() { return g_verbosity.load(std::memory_order_relaxed); }
void SetMinSeverity(Severity severity) { g_min_severity.store(static_cast<int>(severity)); }
Severity MinSeverity() {
  return static_cast<Severity>(g_min_severity.load(std::memory_order_relaxed));
}

LogMessage::LogMessage(Severity severity, const char* file, int line)
    : severity_(severity), file_(file), line_(line) {}

LogMessage::~LogMessage() {
  static const char kLetters[] = {'I', 'W', 'E', 'F'};
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm local;
  localtime_r(&tv.tv_sec, &local);
  char prefix[64];
  std::snprintf(prefix, sizeof(prefix), "%c %02d:%02d:%02d.%03d ",
                kLetters[static_cast<int>(severity_)], local.tm_hour, local.tm_min, local.tm_sec,
                static_cast<int>(tv.tv_usec / 1000));
  std::string text = prefix;
  text += ThreadLogTag();
  text += ' ';
  text += Basename(file_);
  text += ':';
  text += std::to_string(line_);
  text += "] ";
  text += stream_.str();
  text += '\n';
  // One write() per line keeps lines whole when threads and processes share stderr.
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
  if (severity_ == Severity::kFatal) std::abort();
}

}  // namespace tessera::logging

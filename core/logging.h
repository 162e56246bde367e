// Logging facade: glog-shaped TS_LOG(INFO|WARNING|ERROR|FATAL) << ..., TS_VLOG(n), TS_CHECK*.
// Lines go to stderr as "I 12:03:04.512 server:3 shard.cc:88] text"; the "server:3" tag is
// per thread (SetThreadLogTag), so threads of an in-process job and ranks of an MPI job are
// told apart. The backend is this file's .cc only. Thread-safe: a line is written atomically.
#pragma once

#include <sstream>
#include <string>

namespace tessera::logging {

enum class Severity { kInfo = 0, kWarning = 1, kError = 2, kFatal = 3 };

// Names the calling thread in its log lines, e.g. "worker:1". Thread-local.
void SetThreadLogTag(const std::string& tag);
const std::string& ThreadLogTag();
// Verbosity for TS_VLOG(n); lines with n <= level are written. Process-wide.
void SetVerbosity(int level);
int Verbosity();
// Lines below this severity are dropped (tests and benchmarks quiet INFO this way).
void SetMinSeverity(Severity severity);
Severity MinSeverity();

class LogMessage {
 public:
  LogMessage(Severity severity, const char* file, int line);
  ~LogMessage();  // writes the line; aborts for kFatal
  std::ostream& stream() { return stream_; }

 private:
  Severity severity_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};

// Swallows the stream in the not-taken branch of TS_LOG_IF-like macros.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace tessera::logging

#define TS_LOG_SEVERITY_INFO ::tessera::logging::Severity::kInfo
#define TS_LOG_SEVERITY_WARNING ::tessera::logging::Severity::kWarning
#define TS_LOG_SEVERITY_ERROR ::tessera::logging::Severity::kError
#define TS_LOG_SEVERITY_FATAL ::tessera::logging::Severity::kFatal

#define TS_LOG(sev)                                             \
  !(TS_LOG_SEVERITY_##sev >= ::tessera::logging::MinSeverity()) \
      ? (void)0                                                 \
      : ::tessera::logging::Voidify() &                         \
            ::tessera::logging::LogMessage(TS_LOG_SEVERITY_##sev, __FILE__, __LINE__).stream()

#define TS_VLOG(n)                                                                        \
  !((n) <= ::tessera::logging::Verbosity())                                               \
      ? (void)0                                                                           \
      : ::tessera::logging::Voidify() &                                                   \
            ::tessera::logging::LogMessage(::tessera::logging::Severity::kInfo, __FILE__, \
                                           __LINE__)                                      \
                .stream()

// Always on: our own invariants. Aborts with the condition and the streamed message.
#define TS_CHECK(cond)                                                                        \
  (cond) ? (void)0                                                                            \
         : ::tessera::logging::Voidify() &                                                    \
               ::tessera::logging::LogMessage(::tessera::logging::Severity::kFatal, __FILE__, \
                                              __LINE__)                                       \
                       .stream()                                                              \
                   << "Check failed: " #cond " "

#define TS_CHECK_OP(a, op, b) TS_CHECK((a)op(b)) << "(" << (a) << " vs " << (b) << ") "
#define TS_CHECK_EQ(a, b) TS_CHECK_OP(a, ==, b)
#define TS_CHECK_NE(a, b) TS_CHECK_OP(a, !=, b)
#define TS_CHECK_LT(a, b) TS_CHECK_OP(a, <, b)
#define TS_CHECK_LE(a, b) TS_CHECK_OP(a, <=, b)
#define TS_CHECK_GT(a, b) TS_CHECK_OP(a, >, b)
#define TS_CHECK_GE(a, b) TS_CHECK_OP(a, >=, b)
#define TS_CHECK_OK(expr)                                           \
  do {                                                              \
    ::tessera::Status ts_check_status_ = (expr);                    \
    TS_CHECK(ts_check_status_.ok()) << ts_check_status_.ToString(); \
  } while (0)

#ifdef NDEBUG
#define TS_DCHECK(cond) \
  while (false) TS_CHECK(cond)
#else
#define TS_DCHECK(cond) TS_CHECK(cond)
#endif

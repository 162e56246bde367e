#include "bench/bench_util.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>

namespace tessera::bench {

double Samples::Median() const {
  if (values.empty()) return 0;
  std::vector<double> v = values;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double Samples::Best() const {
  return values.empty() ? 0 : *std::max_element(values.begin(), values.end());
}

std::string Samples::List(double scale) const {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%s%.3g", i > 0 ? ", " : "", values[i] / scale);
    out += buf;
  }
  return out + "]";
}

JsonLines::JsonLines(const std::string& path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) {
    std::fprintf(stderr, "cannot open %s for writing\n", path.c_str());
    std::exit(2);
  }
}

JsonLines::~JsonLines() {
  if (file_ != nullptr) std::fclose(file_);
}

void JsonLines::Write(const std::string& name,
                      const std::vector<std::pair<std::string, double>>& fields) {
  if (file_ == nullptr) return;
  std::fprintf(file_, "{\"bench\":\"%s\"", name.c_str());
  for (const auto& [key, value] : fields) std::fprintf(file_, ",\"%s\":%.17g", key.c_str(), value);
  std::fprintf(file_, "}\n");
  std::fflush(file_);
}

int64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  statm >> size_pages >> resident_pages;
  return resident_pages * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

std::string Human(double value) {
  char buf[32];
  if (value >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.2fG", value / 1e9);
  } else if (value >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", value / 1e6);
  } else if (value >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", value / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f", value);
  }
  return buf;
}

void WriteLineFd(int fd, const std::string& line) {
  std::string data = line + "\n";
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "pipe write failed\n");
      std::exit(2);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::string ReadLineFd(int fd) {
  std::string line;
  char c;
  while (true) {
    ssize_t n = read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::fprintf(stderr, "pipe closed while reading a line\n");
      std::exit(2);
    }
    if (c == '\n') return line;
    line += c;
  }
}

double ProcessCpuSeconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

void ServeCpuQueries(int in_fd, int out_fd) {
  while (true) {
    const std::string line = ReadLineFd(in_fd);
    if (line == "bye") return;
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.6f", ProcessCpuSeconds());
    WriteLineFd(out_fd, buf);
  }
}

double CpuSecondsOf(ChildProcess& child) {
  child.WriteLine("cpu");
  return std::stod(child.ReadLine());
}

ChildProcess::ChildProcess(const std::function<int(int, int)>& body) {
  int down[2], up[2];
  if (pipe(down) != 0 || pipe(up) != 0) {
    std::fprintf(stderr, "pipe failed\n");
    std::exit(2);
  }
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ < 0) {
    std::fprintf(stderr, "fork failed\n");
    std::exit(2);
  }
  if (pid_ == 0) {
    close(down[1]);
    close(up[0]);
    int status = body(down[0], up[1]);
    std::fflush(nullptr);
    _exit(status);
  }
  close(down[0]);
  close(up[1]);
  to_child_ = down[1];
  from_child_ = up[0];
}

ChildProcess::~ChildProcess() {
  Wait();
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
}

void ChildProcess::WriteLine(const std::string& line) { WriteLineFd(to_child_, line); }

std::string ChildProcess::ReadLine() { return ReadLineFd(from_child_); }

int ChildProcess::Wait() {
  if (pid_ > 0) {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    pid_ = -1;
  }
  return status_;
}

}  // namespace tessera::bench

// Small helpers shared by the parts of tessera_bench: timing, repeated measurements, a JSON-lines
// result file, /proc/self/statm, and a child process started with fork() that talks to its
// parent through two pipes.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

namespace tessera::bench {

using Clock = std::chrono::steady_clock;

inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Repeated measurements of one rate: the median is what we quote, the best is the figure on the
// least loaded moment of a shared machine.
struct Samples {
  std::vector<double> values;
  void Add(double v) { values.push_back(v); }
  double Median() const;
  double Best() const;  // the largest value
  // "[3.1, 3.4, 2.9]" scaled by 1/scale, for logs.
  std::string List(double scale) const;
};

// Appends one JSON object per line. Every value is a number except `name`.
class JsonLines {
 public:
  explicit JsonLines(const std::string& path);  // "" writes nothing
  ~JsonLines();
  JsonLines(const JsonLines&) = delete;
  JsonLines& operator=(const JsonLines&) = delete;

  void Write(const std::string& name, const std::vector<std::pair<std::string, double>>& fields);

 private:
  std::FILE* file_ = nullptr;
};

// Resident bytes of this process (second field of /proc/self/statm, in pages).
int64_t ResidentBytes();

// "12.3M" / "456.7k" for rates.
std::string Human(double value);

// A child process running `body(from_parent_fd, to_parent_fd)`; its return value is the exit
// status. fork() is called in the constructor, so create children before the parent starts
// threads or ZeroMQ contexts. The destructor waits for the child.
class ChildProcess {
 public:
  explicit ChildProcess(const std::function<int(int in_fd, int out_fd)>& body);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // One '\n'-terminated line to / from the child.
  void WriteLine(const std::string& line);
  std::string ReadLine();
  // Waits for the child and returns its exit status (-1 if it did not exit normally).
  int Wait();
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  int status_ = -1;
};

// Line I/O on raw pipe descriptors, for the child's side.
void WriteLineFd(int fd, const std::string& line);
std::string ReadLineFd(int fd);

// CPU seconds (user + system) used so far by every thread of this process.
double ProcessCpuSeconds();

// The child's side of CPU accounting: answers each "cpu" line read from in_fd with
// ProcessCpuSeconds() on out_fd, until it reads "bye". Run it on a thread of its own once the
// child no longer uses the pipes otherwise; the parent asks with CpuSecondsOf.
void ServeCpuQueries(int in_fd, int out_fd);
double CpuSecondsOf(ChildProcess& child);

}  // namespace tessera::bench

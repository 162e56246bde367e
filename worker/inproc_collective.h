// InProcessCollectiveGroup: the Collective of workers that are threads of one process (the
// embedded `tessera train` job and the unit tests). One group object is shared by `size` worker
// threads; each takes its Collective with Member(rank).
//
// How an operation runs: every member posts its buffers and blocks; the last member to arrive
// checks that all posted the same operation with matching arguments, computes the result (the
// sum in rank order: ((x0 + x1) + x2) + ..., element by element, the same order MpiCollective
// uses, so the two give bit-identical sums), writes it into every member's buffer and wakes the
// others. The posted buffers belong to the blocked callers, so nothing is copied on the way in.
//
// Failure: a member that waits longer than `timeout` for the others gets DeadlineExceeded naming
// the missing ranks, and Abort(reason) wakes every waiting member with Aborted(reason). Either
// way, and after mismatched arguments (InvalidArgument to every member), the group is failed:
// every waiting and every later call returns that same Status (the members are no longer in
// step, and a late member must not write into the buffer of one that has given up).
//
// Threads: Member(r) is used by one thread at a time (the thread of worker r); Abort, status and
// num_waiting may be called from any thread. The group must outlive every call on its members.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mutex.h"
#include "core/status.h"
#include "worker/collective.h"

namespace tessera::worker {

class InProcessCollectiveGroup {
 public:
  // REQUIRES: size >= 1, timeout > 0.
  InProcessCollectiveGroup(int size, std::chrono::milliseconds timeout);
  ~InProcessCollectiveGroup();
  InProcessCollectiveGroup(const InProcessCollectiveGroup&) = delete;
  InProcessCollectiveGroup& operator=(const InProcessCollectiveGroup&) = delete;

  int size() const { return size_; }
  // The Collective of member `rank` (borrowed from the group). REQUIRES: 0 <= rank < size().
  Collective& Member(int rank);
  // Fails the group with Aborted("in-process collective aborted: " + reason), waking every
  // member that waits. A no-op if the group has already failed (the first failure stays).
  void Abort(const std::string& reason) TS_EXCLUDES(mu_);
  // OK, or the failure every call now returns.
  Status status() const TS_EXCLUDES(mu_);
  // Members that have posted the current operation and wait for the rest (diagnostics, tests).
  int num_waiting() const TS_EXCLUDES(mu_);

 private:
  class MemberCollective;
  enum class Op { kAllReduceSum, kAllGather, kBroadcast };
  // What one member posted for the current operation; the buffers belong to the blocked caller.
  struct Arrival {
    Op op = Op::kAllReduceSum;
    float* data = nullptr;                      // AllReduceSum, Broadcast
    size_t count = 0;                           // AllReduceSum, Broadcast
    int root = 0;                               // Broadcast
    const std::vector<float>* local = nullptr;  // AllGather
    std::vector<float>* all = nullptr;          // AllGather
  };

  // Posts `arrival` for `rank`, waits for the others and returns the operation's Status.
  Status Run(int rank, const Arrival& arrival) TS_EXCLUDES(mu_);
  // Run by the last member to arrive: checks the arrivals and writes the results.
  Status Complete() TS_REQUIRES(mu_);
  static const char* OpName(Op op);

  const int size_;
  const std::chrono::milliseconds timeout_;
  std::vector<std::unique_ptr<MemberCollective>> members_;

  mutable Mutex mu_;
  CondVar cv_;
  std::vector<Arrival> arrivals_ TS_GUARDED_BY(mu_);  // indexed by rank
  std::vector<bool> has_arrived_ TS_GUARDED_BY(mu_);  // rank posted the current operation
  int num_arrived_ TS_GUARDED_BY(mu_) = 0;
  uint64_t generation_ TS_GUARDED_BY(mu_) = 0;     // operations completed
  Status last_result_ TS_GUARDED_BY(mu_);          // Status of operation generation_ - 1
  Status failure_ TS_GUARDED_BY(mu_);              // non-OK once the group has failed
  std::vector<float> scratch_ TS_GUARDED_BY(mu_);  // the rank-order sum / concatenation
};

}  // namespace tessera::worker

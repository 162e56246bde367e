#include "worker/inproc_collective.h"

#include <algorithm>
#include <cstring>

#include "core/logging.h"

namespace tessera::worker {

class InProcessCollectiveGroup::MemberCollective final : public Collective {
 public:
  MemberCollective(InProcessCollectiveGroup* group, int rank) : group_(group), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size_; }

  Status AllReduceSum(float* data, size_t count) override {
    Arrival a;
    a.op = Op::kAllReduceSum;
    a.data = data;
    a.count = count;
    return group_->Run(rank_, a);
  }

  Status AllGather(const std::vector<float>& local, std::vector<float>* all) override {
    Arrival a;
    a.op = Op::kAllGather;
    a.local = &local;
    a.all = all;
    return group_->Run(rank_, a);
  }

  Status Broadcast(float* data, size_t count, int root) override {
    Arrival a;
    a.op = Op::kBroadcast;
    a.data = data;
    a.count = count;
    a.root = root;
    return group_->Run(rank_, a);
  }

 private:
  InProcessCollectiveGroup* const group_;
  const int rank_;
};

InProcessCollectiveGroup::InProcessCollectiveGroup(int size, std::chrono::milliseconds timeout)
    : size_(size), timeout_(timeout), arrivals_(size), has_arrived_(size, false) {
  TS_CHECK_GE(size, 1);
  TS_CHECK(timeout.count() > 0) << timeout.count();
  for (int r = 0; r < size; ++r) members_.push_back(std::make_unique<MemberCollective>(this, r));
}

InProcessCollectiveGroup::~InProcessCollectiveGroup() = default;

Collective& InProcessCollectiveGroup::Member(int rank) {
  TS_CHECK(rank >= 0 && rank < size_) << "rank " << rank << " of " << size_;
  return *members_[rank];
}

void InProcessCollectiveGroup::Abort(const std::string& reason) {
  MutexLock lock(&mu_);
  if (!failure_.ok()) return;
  failure_ = Status::Aborted("in-process collective aborted: " + reason);
  cv_.SignalAll();
}

Status InProcessCollectiveGroup::status() const {
  MutexLock lock(&mu_);
  return failure_;
}

int InProcessCollectiveGroup::num_waiting() const {
  MutexLock lock(&mu_);
  return num_arrived_;
}

const char* InProcessCollectiveGroup::OpName(Op op) {
  switch (op) {
    case Op::kAllReduceSum:
      return "AllReduceSum";
    case Op::kAllGather:
      return "AllGather";
    case Op::kBroadcast:
      return "Broadcast";
  }
  return "unknown";
}

Status InProcessCollectiveGroup::Run(int rank, const Arrival& arrival) {
  MutexLock lock(&mu_);
  if (!failure_.ok()) return failure_;
  TS_CHECK(!has_arrived_[rank]) << "rank " << rank << " is already inside an operation";
  arrivals_[rank] = arrival;
  has_arrived_[rank] = true;
  if (++num_arrived_ == size_) {
    const Status result = Complete();
    std::fill(has_arrived_.begin(), has_arrived_.end(), false);
    num_arrived_ = 0;
    ++generation_;
    last_result_ = result;
    if (!result.ok()) failure_ = result;
    cv_.SignalAll();
    return result;
  }
  const uint64_t generation = generation_;
  const bool ended = cv_.WaitFor(&mu_, timeout_, [&]() TS_REQUIRES(mu_) {
    return generation_ != generation || !failure_.ok();
  });
  if (!ended) {
    std::string missing;
    for (int r = 0; r < size_; ++r) {
      if (!has_arrived_[r]) missing += (missing.empty() ? "" : ",") + std::to_string(r);
    }
    failure_ = Status::DeadlineExceeded("in-process collective: rank " + std::to_string(rank) +
                                        " waited " + std::to_string(timeout_.count()) + " ms in " +
                                        OpName(arrival.op) + " for rank(s) " + missing);
    cv_.SignalAll();
    return failure_;
  }
  // The operation completed (possibly just before a failure): the next one cannot complete
  // without this member, so last_result_ is still this operation's.
  if (generation_ != generation) return last_result_;
  return failure_;
}

Status InProcessCollectiveGroup::Complete() {
  const Arrival& first = arrivals_[0];
  for (int r = 1; r < size_; ++r) {
    const Arrival& a = arrivals_[r];
    if (a.op != first.op) {
      return Status::InvalidArgument(std::string("in-process collective: rank 0 called ") +
                                     OpName(first.op) + ", rank " + std::to_string(r) + " called " +
                                     OpName(a.op));
    }
    if (first.op != Op::kAllGather && a.count != first.count) {
      return Status::InvalidArgument(std::string("in-process collective ") + OpName(first.op) +
                                     ": rank 0 passed " + std::to_string(first.count) +
                                     " floats, rank " + std::to_string(r) + " " +
                                     std::to_string(a.count));
    }
    if (first.op == Op::kBroadcast && a.root != first.root) {
      return Status::InvalidArgument("in-process collective Broadcast: rank 0 passed root " +
                                     std::to_string(first.root) + ", rank " + std::to_string(r) +
                                     " root " + std::to_string(a.root));
    }
  }
  for (int r = 0; r < size_; ++r) {
    const Arrival& a = arrivals_[r];
    if (first.op == Op::kAllGather ? a.all == nullptr : (a.count > 0 && a.data == nullptr)) {
      return Status::InvalidArgument(std::string("in-process collective ") + OpName(first.op) +
                                     ": rank " + std::to_string(r) + " passed a null buffer");
    }
  }

  switch (first.op) {
    case Op::kAllReduceSum: {
      // Rank order, element by element: the float additions happen in the same order whatever
      // the arrival order, so the sum is reproducible (and equals MpiCollective's).
      const size_t n = first.count;
      if (n == 0) return OkStatus();
      scratch_.assign(first.data, first.data + n);
      float* sum = scratch_.data();
      for (int r = 1; r < size_; ++r) {
        const float* x = arrivals_[r].data;
        for (size_t i = 0; i < n; ++i) sum[i] += x[i];
      }
      for (int r = 0; r < size_; ++r) std::memcpy(arrivals_[r].data, sum, n * sizeof(float));
      return OkStatus();
    }
    case Op::kAllGather: {
      // Concatenate first: a member's `all` may be its own `local`.
      scratch_.clear();
      for (int r = 0; r < size_; ++r) {
        scratch_.insert(scratch_.end(), arrivals_[r].local->begin(), arrivals_[r].local->end());
      }
      for (int r = 0; r < size_; ++r) *arrivals_[r].all = scratch_;
      return OkStatus();
    }
    case Op::kBroadcast: {
      if (first.root < 0 || first.root >= size_) {
        return Status::InvalidArgument("in-process collective Broadcast: root " +
                                       std::to_string(first.root) + " not in [0, " +
                                       std::to_string(size_) + ")");
      }
      const float* src = arrivals_[first.root].data;
      for (int r = 0; r < size_; ++r) {
        if (r != first.root && first.count > 0 && arrivals_[r].data != src) {
          std::memcpy(arrivals_[r].data, src, first.count * sizeof(float));
        }
      }
      return OkStatus();
    }
  }
  return Status::Internal("in-process collective: unknown operation");
}

}  // namespace tessera::worker

// The threads of the roles of a one-process job (launch/job.h RunTrainInProcess). std::thread
// throws std::system_error when the process may not start another thread (a thread or memory
// limit, e.g. --workers 1000 under `ulimit -v`); here that becomes a Status that ends the job
// cleanly, FailedPrecondition (exit status 2) naming the node, instead of std::terminate.
#pragma once

#include <functional>
#include <thread>
#include <vector>

#include "core/rpc.h"

namespace tessera::launch {

// Starts `body`, the thread of rpc's node, on a new thread appended to *threads. When it cannot
// be started, returns the failure in the node's name; the node's transport is not started then
// (its thread starts it), so the caller ends the job (Scheduler::Abort), and the nodes already
// started stop at that abort.
Status StartNodeThread(std::vector<std::thread>* threads, RpcNode* rpc, std::function<void()> body);

// Runs a node's role on its thread: a thread the role itself cannot start fails the node
// (reported to the scheduler, returned) instead of terminating the process.
Status RunNode(RpcNode* rpc, const std::function<Status()>& role);

}  // namespace tessera::launch

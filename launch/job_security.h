// The security part of a job's start-up: the job secret every process of a multi-process job
// authenticates with (core/auth.h), the members it admits and the interface it listens on.
// Called by launch/job.cc only.
#pragma once

#include <mpi.h>

#include <optional>
#include <string>
#include <vector>

#include "core/auth.h"
#include "core/node_id.h"
#include "core/status.h"
#include "launch/flags.h"

namespace tessera::launch {

// Every node of a job of `servers` servers and `workers` workers.
std::vector<NodeId> JobMembers(int servers, int workers);

// One process, ZeroMQ transport: --auth-key's secret, or a fresh one; nullopt with --insecure.
StatusOr<std::optional<auth::JobSecret>> JobSecretInProcess(const TrainOptions& o);

// Under MPI (collective over MPI_COMM_WORLD; every rank calls it with the same options): rank 0
// reads --auth-key or generates a secret and hands it to the other ranks with MPI_Bcast, so it
// is never on a command line or in the environment. nullopt with --insecure, which is refused
// (kInvalidArgument, on every rank) when the job spans hosts. When rank 0 fails, the other ranks
// get kFailedPrecondition and should leave the report to rank 0.
StatusOr<std::optional<auth::JobSecret>> ShareJobSecret(const TrainOptions& o, int rank,
                                                        bool one_host);

// Every rank's pid, by rank (collective over MPI_COMM_WORLD of `size` ranks). A receiver maps a
// shared-frame descriptor only when it names the pid its sender, a peer on the same host, had
// here at start-up (ZmqTransport::SetPeerPid).
std::vector<int> GatherPids(int size);

// The address a rank's ROUTER binds to and peers reach it at: 127.0.0.1 when every rank runs on
// this host, else the (non-loopback) IPv4 address this host's name resolves to, never all
// interfaces. kFailedPrecondition when the name resolves only to loopback addresses.
StatusOr<std::string> ListenAddress(bool one_host);

}  // namespace tessera::launch

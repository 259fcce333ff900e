// Helpers shared by the MPI and NCCL backends (both use MPI to find their peers).
#pragma once

#include <mpi.h>

namespace clipscale {

// Aborts with the rank, the MPI call and MPI's error string when rc is not
// MPI_SUCCESS. Communicators it is used with must have MPI_ERRORS_RETURN set,
// otherwise MPI aborts first with a message that names no call.
void CheckMpi(int rc, const char* call, MPI_Comm comm);

// Duplicates `parent` (so our collectives never match a caller's) and sets
// MPI_ERRORS_RETURN on the copy. Aborts unless MPI is active.
MPI_Comm DupCommunicator(MPI_Comm parent);

// The ranks of `comm` on this host (MPI_COMM_TYPE_SHARED); the caller frees it
// with MPI_Comm_free.
MPI_Comm HostCommunicator(MPI_Comm comm);

// This process's index among the ranks of `comm` on the same host.
int LocalRankOnHost(MPI_Comm comm);

// Frees a communicator from DupCommunicator; aborts if MPI was finalized first.
void FreeCommunicator(MPI_Comm* comm);

}  // namespace clipscale

#include "distributed/mpi_util.h"

#include <string>

#include "core/status.h"

namespace clipscale {

void CheckMpi(int rc, const char* call, MPI_Comm comm) {
  if (rc == MPI_SUCCESS) return;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  FatalError(__FILE__, __LINE__,
             absl::StrCat("rank ", rank, ": ", call, " failed: ", std::string(text, length)));
}

MPI_Comm DupCommunicator(MPI_Comm parent) {
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  CS_CHECK_MSG(initialized && !finalized,
               "MPI is not active; main must hold a MpiRuntime while communicators live");
  MPI_Comm comm = MPI_COMM_NULL;
  CheckMpi(MPI_Comm_dup(parent, &comm), "MPI_Comm_dup", parent);
  CheckMpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler", comm);
  return comm;
}

MPI_Comm HostCommunicator(MPI_Comm comm) {
  MPI_Comm host = MPI_COMM_NULL;
  CheckMpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &host),
           "MPI_Comm_split_type", comm);
  return host;
}

int LocalRankOnHost(MPI_Comm comm) {
  MPI_Comm host = HostCommunicator(comm);
  int local = 0;
  MPI_Comm_rank(host, &local);
  MPI_Comm_free(&host);
  return local;
}

void FreeCommunicator(MPI_Comm* comm) {
  if (*comm == MPI_COMM_NULL) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  CS_CHECK_MSG(!finalized, "a communicator outlived MPI_Finalize (MpiRuntime)");
  CheckMpi(MPI_Comm_free(comm), "MPI_Comm_free", MPI_COMM_WORLD);
}

}  // namespace clipscale

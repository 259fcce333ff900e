#include "distributed/cpu_share.h"

#include <mpi.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/cpu_affinity.h"
#include "distributed/mpi_runtime.h"
#include "distributed/mpi_util.h"

namespace clipscale {

int CpuShare::threads() const { return std::max(1, affinity_cpus / std::max(1, sharing_ranks)); }

std::string CpuShare::ToString() const {
  return absl::StrFormat("%d thread%s: %d CPU%s shared by %d of %d rank%s on this host", threads(),
                         threads() == 1 ? "" : "s", affinity_cpus, affinity_cpus == 1 ? "" : "s",
                         sharing_ranks, local_ranks, local_ranks == 1 ? "" : "s");
}

CpuShare ShareCpusOnHost() {
  const cpu_set_t mine = AffinityMask();
  CpuShare share;
  share.affinity_cpus = std::max(1, CPU_COUNT(&mine));
  if (!MpiRuntime::Active()) return share;
  MPI_Comm host = HostCommunicator(MPI_COMM_WORLD);
  int local = 1;
  MPI_Comm_size(host, &local);
  std::vector<cpu_set_t> masks(static_cast<size_t>(local));
  CheckMpi(MPI_Allgather(&mine, sizeof(cpu_set_t), MPI_BYTE, masks.data(), sizeof(cpu_set_t),
                         MPI_BYTE, host),
           "MPI_Allgather", host);
  MPI_Comm_free(&host);
  share.local_ranks = local;
  share.sharing_ranks = 0;
  for (cpu_set_t& other : masks) {
    cpu_set_t both;
    CPU_AND(&both, &other, &mine);
    if (CPU_COUNT(&both) > 0) ++share.sharing_ranks;
  }
  share.sharing_ranks = std::max(1, share.sharing_ranks);
  return share;
}

}  // namespace clipscale

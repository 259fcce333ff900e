// How many threads a rank should use: the CPUs its launcher lets it run on
// (sched_getaffinity), shared with the other ranks on the same host that may
// run on the same CPUs. One rule under mpirun, srun and a plain process:
//   mpirun --bind-to core, 2 ranks, 2 cores: each rank 1 CPU, nobody shares: 1
//   srun -n 2 (no binding), 2 cores:        each rank 2 CPUs, 2 share them: 1
//   one process under taskset -c 0-3:         4 CPUs, alone: 4
// The ranks on a host are found by MPI itself (MPI_COMM_TYPE_SHARED), not
// from launcher variables: srun sets no SLURM_NTASKS_PER_NODE, and a rank that
// believes it is alone on its node oversubscribes it.
#pragma once

#include <string>

namespace clipscale {

struct CpuShare {
  int affinity_cpus = 1;  // CPUs in this process's affinity mask
  int local_ranks = 1;    // ranks of the job on this host (this one included)
  int sharing_ranks = 1;  // of those, the ones whose masks overlap this one's (this one included)
  int threads() const;    // max(1, affinity_cpus / sharing_ranks)
  std::string ToString() const;  // "2 threads: 4 CPUs shared by 2 of 2 ranks on this host"
};

// Collective over MPI_COMM_WORLD when MPI is initialized (every rank must
// call it, at the same point); otherwise this process alone.
CpuShare ShareCpusOnHost();

}  // namespace clipscale

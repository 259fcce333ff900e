// The CPUs this process may run on, as its launcher set them (taskset, mpirun
// --bind-to, srun --cpu-bind, a cgroup cpuset): the count to size thread pools
// by, rather than std::thread::hardware_concurrency(), which counts the machine.
#pragma once

#include <sched.h>

namespace clipscale {

// sched_getaffinity of this process; every online CPU when that fails.
cpu_set_t AffinityMask();

// CPUs in AffinityMask() (at least 1).
int AffinityCpuCount();

}  // namespace clipscale

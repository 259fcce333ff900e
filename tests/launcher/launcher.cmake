clipscale_test(cli_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cli_test.cc
  DEPS clipscale_train LABELS "e2e" TORCH_PCH)
add_dependencies(cli_test clipscale)
# The coordinator in-process over loopback gRPC: refusals, robustness against
# junk and oversized messages, the two-phase commit, dead-rank detection.
clipscale_test(coordinator_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/coordinator_test.cc
  DEPS clipscale_coordinator LABELS "unit")
# `clipscale launch` end to end: kill -9, SIGSTOP, hangs, exceptions, NaNs,
# exhausted restarts, shrinking, on real mpirun jobs.
clipscale_test(launch_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/launch_test.cc
  DEPS clipscale_core LABELS "e2e;mpi" TIMEOUT 1200)
add_dependencies(launch_test clipscale)
set_tests_properties(launch_test PROPERTIES COST 200)
# The Slurm allocation as the launcher reads it; srun's failure lines.
clipscale_test(slurm_env_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/slurm_env_test.cc
  DEPS clipscale_coordinator LABELS "unit")

# Communicator tests. comm_test runs under mpiexec: NP 2 and NP 4 exercise MPI
# on CPU tensors; comm_test_nccl and comm_test_nccl_watchdog run the NCCL and
# watchdog tests with one rank (skipped, visibly, without a GPU).
# CLIPSCALE_EXPECTED_RANKS makes a run with the wrong number of ranks fail.
clipscale_test(comm_local_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/comm_local_test.cc
  DEPS clipscale_distributed LABELS "unit" TORCH_PCH TIMEOUT 120)
clipscale_test(comm_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/comm_test.cc
  DEPS clipscale_distributed LABELS "unit;mpi" TORCH_PCH NP 2 TIMEOUT 120)
if(CLIPSCALE_HAVE_NCCL)  # the watchdog test enqueues ATen's CUDA sleep kernel
  target_compile_definitions(comm_test PRIVATE CLIPSCALE_TEST_NCCL=1)
endif()
set_property(TEST comm_test APPEND PROPERTY ENVIRONMENT CLIPSCALE_EXPECTED_RANKS=2)
clipscale_mpi_test_ranks(comm_test 4 LABELS "unit;mpi" TIMEOUT 180)
# One rank each (the watchdog test starts a fresh single-rank child); ctest
# reports them as skipped, not passed, where there is no GPU or no NCCL.
clipscale_test_case(comm_test nccl FILTER "NcclComm.*" NP 1 LABELS "gpu;mpi" TIMEOUT 180)
clipscale_test_case(comm_test nccl_watchdog FILTER "NcclWatchdog.*" NP 1 LABELS "gpu;mpi"
                    TIMEOUT 180)

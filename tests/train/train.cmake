clipscale_test(schedule_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/schedule_test.cc
  DEPS clipscale_train LABELS "unit;parity")
clipscale_test(optimizer_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/optimizer_test.cc
  DEPS clipscale_train LABELS "unit" TORCH_PCH)
clipscale_test(lock_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/lock_test.cc
  DEPS clipscale_train LABELS "unit" TORCH_PCH)
clipscale_test(train_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/train_test.cc
  DEPS clipscale_train LABELS "e2e" TORCH_PCH TIMEOUT 900)
# The data-parallel contract (loss and every gradient equal the one-process
# full-matrix ones; replicas stay bitwise identical) with W = 1, 2 and 4 ranks.
clipscale_test(data_parallel_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/data_parallel_test.cc
  DEPS clipscale_train LABELS "unit;mpi" TORCH_PCH NP 1 TIMEOUT 300)
set_property(TEST data_parallel_test APPEND PROPERTY ENVIRONMENT CLIPSCALE_EXPECTED_RANKS=1)
clipscale_mpi_test_ranks(data_parallel_test 2 LABELS "unit;mpi" TIMEOUT 300)
clipscale_mpi_test_ranks(data_parallel_test 4 LABELS "unit;mpi" TIMEOUT 300)
# mpirun -np W clipscale train, end to end.
clipscale_test(train_distributed_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/train_distributed_test.cc
  DEPS clipscale_core LABELS "e2e;mpi" TIMEOUT 900)
target_link_libraries(train_distributed_test PRIVATE nlohmann_json::nlohmann_json)
add_dependencies(train_distributed_test clipscale)
clipscale_test(retrieval_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/retrieval_test.cc
  DEPS clipscale_train LABELS "unit" TORCH_PCH)
clipscale_test(train_config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/train_config_test.cc
  DEPS clipscale_train LABELS "unit" TORCH_PCH TIMEOUT 60)
# One rank of `mpirun -np 3 clipscale train` fails mid-run (fault injection):
# the job must end, non-zero, naming the rank.
clipscale_test(rank_failure_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/rank_failure_test.cc
  DEPS clipscale_train LABELS "e2e;mpi" TIMEOUT 600)
add_dependencies(rank_failure_test clipscale)
# The streaming loader end to end: same global batches for W = 1, 2, 4 under
# mpirun; peak memory independent of the dataset's size.
clipscale_test(loader_e2e_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/loader_e2e_test.cc
  DEPS clipscale_core LABELS "e2e;mpi" TIMEOUT 600)
add_dependencies(loader_e2e_test clipscale)
clipscale_test(eval_split_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/eval_split_test.cc
  DEPS clipscale_train clipscale_loader_fixtures LABELS "unit" TORCH_PCH TIMEOUT 120)
# Checkpoints and resume end to end: bitwise continuation after a signal, a
# kill -9 (also inside a save), corruption, a full disk; W=4 from W=2.
clipscale_test(checkpoint_resume_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/checkpoint_resume_test.cc
  DEPS clipscale_core LABELS "e2e;mpi" TIMEOUT 900)
target_link_libraries(checkpoint_resume_test PRIVATE nlohmann_json::nlohmann_json)
add_dependencies(checkpoint_resume_test clipscale)
# The longest entries start first under ctest -j (observed on 2 cores:
# train_test ~370 s with its precision runs on 2026-12-03, checkpoint_resume_test
# ~130 s), so none of them is left running alone at the end.
set_tests_properties(train_test PROPERTIES COST 380)
set_tests_properties(checkpoint_resume_test PROPERTIES COST 150)
clipscale_test(grad_scaler_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/grad_scaler_test.cc
  DEPS clipscale_train LABELS "unit;parity" TORCH_PCH)
# ZeRO-1's sharded AdamW: bitwise the unsharded update at W = 1, 2 and 4,
# state bytes falling as 1/W, shards resharded onto another world size.
clipscale_test(zero_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/zero_test.cc
  DEPS clipscale_train LABELS "unit;mpi" TORCH_PCH NP 1 TIMEOUT 300)
set_property(TEST zero_test APPEND PROPERTY ENVIRONMENT CLIPSCALE_EXPECTED_RANKS=1)
clipscale_mpi_test_ranks(zero_test 2 LABELS "unit;mpi" TIMEOUT 300)
clipscale_mpi_test_ranks(zero_test 4 LABELS "unit;mpi" TIMEOUT 300)
# The GPU path (scripts/gpu-check.sh): tiled losses on CUDA vs CPU, pinned
# batch buffers, a short `clipscale train` on CUDA over NCCL. Every case needs
# a CUDA device: without one the entry is reported as skipped.
clipscale_test(gpu_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/gpu_test.cc
  DEPS clipscale_train LABELS "gpu" TORCH_PCH TIMEOUT 300)
add_dependencies(gpu_test clipscale)

# clipscale on a real one-machine Slurm (slurmctld + slurmd started by the
# test): srun thread counts, a generated sbatch script, requeue on the warning
# signal, restarts inside the allocation. RUN_SERIAL: the cluster's 2 cores are
# what the jobs get, and task binding is part of what is tested.
clipscale_test(slurm_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/slurm_test.cc
  DEPS clipscale_core LABELS "cluster;slurm;mpi" TIMEOUT 1500)
add_dependencies(slurm_test clipscale)
clipscale_test_case(slurm_test cleanup FILTER "SlurmCleanup.*" LABELS "cluster;slurm" TIMEOUT 120)
set_tests_properties(slurm_test PROPERTIES RUN_SERIAL TRUE COST 150 FIXTURES_REQUIRED slurm_daemons)
set_tests_properties(slurm_test_cleanup PROPERTIES RUN_SERIAL TRUE FIXTURES_CLEANUP slurm_daemons)

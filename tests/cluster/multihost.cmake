# clipscale across hosts made on this machine as network namespaces (needs
# root): 2 hosts x 2 ranks train like 4 ranks on one host; `clipscale launch`
# heals a host cut off the network mid-run; an unreachable host ends the
# launch naming it. Fixed names and addresses: serial. The cleanup entry
# removes the namespaces even when the cases crashed or timed out.
clipscale_test(multihost_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/multihost_test.cc
  DEPS clipscale_core LABELS "cluster;mpi" TIMEOUT 900)
target_link_libraries(multihost_test PRIVATE nlohmann_json::nlohmann_json)
add_dependencies(multihost_test clipscale)
clipscale_test_case(multihost_test cleanup FILTER "MultihostCleanup.*" LABELS "cluster;mpi"
  TIMEOUT 60)
set_tests_properties(multihost_test PROPERTIES RUN_SERIAL TRUE COST 200
  FIXTURES_REQUIRED multihost_hosts)
set_tests_properties(multihost_test_cleanup PROPERTIES RUN_SERIAL TRUE
  FIXTURES_CLEANUP multihost_hosts)

clipscale_test(cli_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cli_test.cc
  DEPS clipscale_train LABELS "e2e" TORCH_PCH)
add_dependencies(cli_test clipscale)

clipscale_test(tar_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tar_test.cc
  DEPS clipscale_data LABELS "unit;parity")
clipscale_test(synth_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/synth_test.cc
  DEPS clipscale_data LABELS "unit")

clipscale_test(safetensors_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/safetensors_test.cc
               DEPS clipscale_core LABELS "unit;parity" TIMEOUT 120)
clipscale_test(config_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/config_test.cc
               DEPS clipscale_core LABELS "unit" TIMEOUT 60)
clipscale_test(checkpoint_dir_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/checkpoint_dir_test.cc
               DEPS clipscale_core LABELS "unit" TIMEOUT 60)
clipscale_test(malloc_tuning_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/malloc_tuning_test.cc
               DEPS clipscale_core LABELS "unit" TIMEOUT 60)

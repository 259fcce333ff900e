clipscale_test(metrics_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_test.cc
               DEPS clipscale_core LABELS "unit" TIMEOUT 60)
clipscale_test(metrics_tensorboard_test
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_tensorboard_test.cc
               DEPS clipscale_core LABELS "unit;parity" TIMEOUT 120)

clipscale_test(schedule_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/schedule_test.cc
  DEPS clipscale_train LABELS "unit;parity")
clipscale_test(optimizer_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/optimizer_test.cc
  DEPS clipscale_train LABELS "unit" TORCH_PCH)
clipscale_test(lock_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/lock_test.cc
  DEPS clipscale_train LABELS "unit" TORCH_PCH)
clipscale_test(train_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/train_test.cc
  DEPS clipscale_train LABELS "e2e" TORCH_PCH TIMEOUT 900)

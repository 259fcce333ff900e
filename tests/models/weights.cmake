clipscale_test(weights_io_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/weights_io_test.cc
               DEPS clipscale_models LABELS "unit;parity" TORCH_PCH TIMEOUT 300)
clipscale_test_case(weights_io_test cuda FILTER "WeightsIoTest.LoadsIntoCudaModules"
                    LABELS "gpu" TIMEOUT 300)
clipscale_test(resnet_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/resnet_test.cc
               DEPS clipscale_models LABELS "unit;parity" TORCH_PCH TIMEOUT 600)

clipscale_test(image_decode_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_decode_test.cc
               DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "unit;parity" TIMEOUT 300)
clipscale_test(image_transform_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_transform_test.cc
               DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "unit;parity" TIMEOUT 300)
clipscale_test(image_truncation_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_truncation_test.cc
               DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "unit;parity" TIMEOUT 60)

clipscale_test(image_decode_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_decode_test.cc
               DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "unit;parity" TIMEOUT 300)
clipscale_test(image_transform_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_transform_test.cc
               DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "unit;parity" TIMEOUT 300)
# The same cases through the portable loops (CLIPSCALE_SIMD=off), which CPUs
# without AVX2 and other architectures run.
add_test(NAME image_transform_test_portable COMMAND image_transform_test)
set_tests_properties(image_transform_test_portable PROPERTIES LABELS "unit;parity" TIMEOUT 300
  SKIP_RETURN_CODE 77
  ENVIRONMENT "CLIPSCALE_SIMD=off;CLIPSCALE_DATA_DIR=${CLIPSCALE_DATA_DIR};CLIPSCALE_SKIP_FILE=${CLIPSCALE_SKIP_DIR}/image_transform_test_portable;CLIPSCALE_TEST_ENTRY=image_transform_test_portable")
clipscale_test(image_truncation_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/image_truncation_test.cc
               DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "unit;parity" TIMEOUT 60)

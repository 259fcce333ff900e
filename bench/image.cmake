add_executable(image_bench ${CMAKE_CURRENT_LIST_DIR}/image_bench.cc)
target_link_libraries(image_bench PRIVATE clipscale_data nlohmann_json::nlohmann_json
                      clipscale_warnings)
target_compile_definitions(image_bench PRIVATE
  CLIPSCALE_BENCH_PYTHON="${CLIPSCALE_PYTHON}"
  CLIPSCALE_BENCH_SCRIPT="${CMAKE_CURRENT_LIST_DIR}/py/image_bench.py")

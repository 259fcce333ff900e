add_executable(loader_bench ${CMAKE_CURRENT_LIST_DIR}/loader_bench.cc)
target_link_libraries(loader_bench PRIVATE clipscale_data nlohmann_json::nlohmann_json
                      clipscale_warnings)
target_compile_definitions(loader_bench PRIVATE
  CLIPSCALE_BENCH_PYTHON="${CLIPSCALE_PYTHON}"
  CLIPSCALE_BENCH_SCRIPT="${CMAKE_CURRENT_LIST_DIR}/py/loader_bench.py")

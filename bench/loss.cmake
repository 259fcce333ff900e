# loss_bench: tiled vs full-matrix vs OpenCLIP contrastive loss, time and peak memory
# (OpenCLIP runs through the venv Python, bench/py/loss_bench.py).
add_executable(loss_bench ${CMAKE_CURRENT_LIST_DIR}/loss_bench.cc)
target_link_libraries(loss_bench PRIVATE clipscale_distributed nlohmann_json::nlohmann_json
                      clipscale_warnings)
target_precompile_headers(loss_bench REUSE_FROM clipscale_torch_pch)
target_compile_definitions(loss_bench PRIVATE
  CLIPSCALE_BENCH_PYTHON="${CLIPSCALE_PYTHON}"
  CLIPSCALE_BENCH_SCRIPT="${CMAKE_CURRENT_LIST_DIR}/py/loss_bench.py")

# gpu_loss_bench: the tiled losses on one CUDA device (time, peak device memory)
# for bench/gpu_bench.py, which runs OpenCLIP's ClipLoss beside it. Builds
# everywhere; without a CUDA device it says so and exits 77.
add_executable(gpu_loss_bench ${CMAKE_CURRENT_LIST_DIR}/gpu_loss_bench.cc)
target_link_libraries(gpu_loss_bench PRIVATE clipscale_distributed nlohmann_json::nlohmann_json
                      absl::strings clipscale_warnings)
target_precompile_headers(gpu_loss_bench REUSE_FROM clipscale_torch_pch)

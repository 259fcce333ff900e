# optimizer_bench: FusedAdamW vs torch::optim::AdamW step time, same run.
add_executable(optimizer_bench ${CMAKE_CURRENT_LIST_DIR}/optimizer_bench.cc)
target_link_libraries(optimizer_bench PRIVATE clipscale_train clipscale_warnings)
target_precompile_headers(optimizer_bench REUSE_FROM clipscale_torch_pch)

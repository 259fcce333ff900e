# tokenizer_bench: ClipTokenizer vs open_clip.tokenize (run through the venv Python).
add_executable(tokenizer_bench ${CMAKE_CURRENT_LIST_DIR}/tokenizer_bench.cc)
target_link_libraries(tokenizer_bench PRIVATE clipscale_data nlohmann_json::nlohmann_json
                      clipscale_warnings)
target_compile_definitions(tokenizer_bench PRIVATE CLIPSCALE_PYTHON="${CLIPSCALE_PYTHON}"
                           CLIPSCALE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

# Real clients of our shards, run from the project venv (scripts/requirements.txt
# pins them): a missing package or a server that does not start fails these.
clipscale_test(webdataset_interop_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/webdataset_interop_test.cc
  DEPS clipscale_data nlohmann_json::nlohmann_json absl::strings LABELS "unit;parity" TIMEOUT 120)
if(CLIPSCALE_WITH_TORCH)  # drives the clipscale binary (train, eval)
  clipscale_test(img2dataset_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/img2dataset_test.cc
    DEPS clipscale_data nlohmann_json::nlohmann_json LABELS "e2e" TIMEOUT 300)
  add_dependencies(img2dataset_test clipscale)
endif()

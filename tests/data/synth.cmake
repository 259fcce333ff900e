clipscale_test(tar_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tar_test.cc
  DEPS clipscale_data LABELS "unit;parity")
clipscale_test(synth_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/synth_test.cc
  DEPS clipscale_data LABELS "unit")
# The dataset index, the epoch order and the streaming loader.
add_library(clipscale_loader_fixtures STATIC ${CMAKE_CURRENT_LIST_DIR}/loader_fixtures.cc)
target_link_libraries(clipscale_loader_fixtures PUBLIC clipscale_data clipscale_test_util)
clipscale_test(sample_order_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/sample_order_test.cc
  DEPS clipscale_data LABELS "unit")
clipscale_test(dataset_index_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/dataset_index_test.cc
  DEPS clipscale_loader_fixtures LABELS "unit")
clipscale_test(stream_loader_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/stream_loader_test.cc
  DEPS clipscale_loader_fixtures LABELS "unit" TIMEOUT 300)
# http:// shards from a loopback server the test starts, pipe: shards, the cache.
clipscale_test(shard_cache_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/shard_cache_test.cc
  DEPS clipscale_loader_fixtures LABELS "unit" TIMEOUT 120)

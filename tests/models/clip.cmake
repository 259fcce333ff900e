# CLIP model parity with open_clip (tests/py/clip_*.py make the references).
clipscale_test(clip_parity_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/clip_parity_test.cc
  DEPS clipscale_models LABELS "unit;parity" TORCH_PCH TIMEOUT 900)
clipscale_test(clip_export_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/clip_export_test.cc
  DEPS clipscale_models LABELS "unit;parity" TORCH_PCH TIMEOUT 900)

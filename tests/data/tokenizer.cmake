# Parity with open_clip.tokenize (ids, cleaning stages, threads) and the Unicode
# building blocks over every code point; both run reference scripts in the venv.
clipscale_test(tokenizer_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test.cc
               DEPS clipscale_data LABELS "unit;parity" TIMEOUT 300)
clipscale_test(tokenizer_unicode_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tokenizer_unicode_test.cc
               DEPS clipscale_data ZLIB::ZLIB absl::str_format LABELS "unit;parity" TIMEOUT 300)

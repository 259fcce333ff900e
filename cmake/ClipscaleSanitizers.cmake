# Sanitizer and libFuzzer instrumentation for the whole tree (preset asan).
# Only core/ and data/ are built then (CLIPSCALE_WITH_TORCH=OFF): the LibTorch
# wheel is not instrumented, and ASan's shadow memory around it costs more time
# than our parsers, which are what hostile input reaches, are worth there.
if(CLIPSCALE_SANITIZE)
  list(JOIN CLIPSCALE_SANITIZE "," _sanitizers)
  # Any report is an error: UBSan would otherwise print and carry on.
  add_compile_options(-fsanitize=${_sanitizers} -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${_sanitizers})
endif()

if(CLIPSCALE_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "CLIPSCALE_BUILD_FUZZERS needs clang (libFuzzer); use the asan preset")
  endif()
  # Coverage feedback in every library the fuzzers reach; the fuzz targets link
  # libFuzzer's main with -fsanitize=fuzzer (tests/fuzz/fuzz.cmake).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

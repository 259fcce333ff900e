# libFuzzer targets (preset asan, CLIPSCALE_BUILD_FUZZERS=ON). Each <name> ships
# a seed corpus in corpus/<name>; ctest replays the seeds once (<name>_seeds),
# scripts/fuzz.sh fuzzes each target for a bounded time.
if(NOT CLIPSCALE_BUILD_FUZZERS)
  return()
endif()

function(clipscale_fuzzer name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} clipscale_warnings)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz)
  add_test(NAME ${name}_seeds
    COMMAND ${name} -runs=0 -error_exitcode=1 ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/corpus/${name})
  set_tests_properties(${name}_seeds PROPERTIES LABELS "unit;fuzz" TIMEOUT 120
    ENVIRONMENT "CLIPSCALE_DATA_DIR=${CLIPSCALE_DATA_DIR}")
endfunction()

set(_fuzz ${CMAKE_CURRENT_LIST_DIR})
clipscale_fuzzer(tar_fuzz SOURCES ${_fuzz}/tar_fuzz.cc DEPS clipscale_data)
clipscale_fuzzer(safetensors_fuzz SOURCES ${_fuzz}/safetensors_fuzz.cc DEPS clipscale_core)
# The model config binder is torch-free; it is compiled in directly because
# clipscale_models (LibTorch) is not part of this build.
clipscale_fuzzer(config_fuzz SOURCES ${_fuzz}/config_fuzz.cc ${PROJECT_SOURCE_DIR}/models/model_config.cc
                 DEPS clipscale_core)
clipscale_fuzzer(tokenizer_fuzz SOURCES ${_fuzz}/tokenizer_fuzz.cc DEPS clipscale_data)
clipscale_fuzzer(image_fuzz SOURCES ${_fuzz}/image_fuzz.cc DEPS clipscale_data)

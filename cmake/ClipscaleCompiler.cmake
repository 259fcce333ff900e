# Warnings, ccache and the helper that declares one library per folder.
find_program(CLIPSCALE_CCACHE ccache)
if(CLIPSCALE_CCACHE)
  set(CMAKE_C_COMPILER_LAUNCHER ${CLIPSCALE_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${CLIPSCALE_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${CLIPSCALE_CCACHE})
endif()

add_library(clipscale_warnings INTERFACE)
target_compile_options(clipscale_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)

# clipscale_library(name SOURCES ... DEPS ... [TORCH_PCH])
function(clipscale_library name)
  cmake_parse_arguments(ARG "TORCH_PCH" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS} PRIVATE clipscale_warnings)
  if(ARG_TORCH_PCH)
    target_precompile_headers(${name} REUSE_FROM clipscale_torch_pch)
  endif()
endfunction()

# MPI's targets add -pthread (which defines _REENTRANT); every TU gets it so the
# precompiled LibTorch header stays valid for all of them.
add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-pthread>)

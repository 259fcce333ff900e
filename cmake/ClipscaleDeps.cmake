# Finds every dependency once, here; folders link the imported targets.
include(FindPkgConfig)

# --- LibTorch from the project venv's torch wheel (or Torch_DIR) -------------
set(CLIPSCALE_PYTHON "" CACHE FILEPATH "Python of the venv whose torch provides LibTorch")
if(NOT CLIPSCALE_PYTHON)
  if(DEFINED ENV{CLIPSCALE_CACHE})
    set(_cache $ENV{CLIPSCALE_CACHE})
  else()
    set(_cache $ENV{HOME}/.cache/clipscale)
  endif()
  if(EXISTS ${_cache}/venv/bin/python)
    set(CLIPSCALE_PYTHON ${_cache}/venv/bin/python CACHE FILEPATH "" FORCE)
  endif()
endif()
if(CLIPSCALE_PYTHON AND CLIPSCALE_WITH_TORCH)
  execute_process(
    COMMAND ${CLIPSCALE_PYTHON} -c
      "import os, torch; print(torch.utils.cmake_prefix_path); print(os.path.dirname(os.path.dirname(torch.__file__)))"
    OUTPUT_VARIABLE _torch_out OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "${CLIPSCALE_PYTHON} cannot import torch; run scripts/setup.sh")
  endif()
  string(REPLACE "\n" ";" _torch_out "${_torch_out}")
  list(GET _torch_out 0 _torch_prefix)
  list(GET _torch_out 1 CLIPSCALE_SITE_PACKAGES)
  list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
endif()
# The CUDA wheel's libtorch_cuda needs the nvidia-* wheels' libraries (NCCL among
# them, newer than the toolkit's); the linker must see the same ones the loader will.
if(CLIPSCALE_SITE_PACKAGES)
  file(GLOB _nvidia_lib_dirs LIST_DIRECTORIES true ${CLIPSCALE_SITE_PACKAGES}/nvidia/*/lib)
  foreach(_dir ${_nvidia_lib_dirs})
    add_link_options(-Wl,-rpath-link,${_dir})
  endforeach()
endif()

# --- CUDA and NCCL: compiled and linked whenever the toolkit is present -------
if(NOT CLIPSCALE_WITH_TORCH)
  set(CLIPSCALE_WITH_CUDA OFF)  # only core/ and data/: nothing uses CUDA, NCCL or MPI
endif()
if(NOT CLIPSCALE_WITH_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(CLIPSCALE_HAVE_CUDA ON)
  elseif(CLIPSCALE_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "CLIPSCALE_WITH_CUDA=ON but no nvcc was found")
  endif()
endif()

if(CLIPSCALE_HAVE_CUDA AND NOT CLIPSCALE_WITH_NCCL STREQUAL "OFF")
  # Prefer the NCCL that torch's wheel loads, so one libnccl lives in the process.
  find_path(NCCL_INCLUDE_DIR nccl.h NO_DEFAULT_PATH
    HINTS $ENV{NCCL_HOME}/include ${CLIPSCALE_SITE_PACKAGES}/nvidia/nccl/include
          ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  find_library(NCCL_LIBRARY NAMES nccl libnccl.so.2 NAMES_PER_DIR NO_DEFAULT_PATH
    HINTS $ENV{NCCL_HOME}/lib ${CLIPSCALE_SITE_PACKAGES}/nvidia/nccl/lib
          ${CUDAToolkit_LIBRARY_DIR} /usr/local/cuda/lib64)
  if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    add_library(clipscale::nccl UNKNOWN IMPORTED)
    set_target_properties(clipscale::nccl PROPERTIES
      IMPORTED_LOCATION ${NCCL_LIBRARY} INTERFACE_INCLUDE_DIRECTORIES ${NCCL_INCLUDE_DIR})
    set(CLIPSCALE_HAVE_NCCL ON)
  elseif(CLIPSCALE_WITH_NCCL STREQUAL "ON")
    message(FATAL_ERROR "CLIPSCALE_WITH_NCCL=ON but nccl.h/libnccl were not found")
  endif()
endif()

# Before Torch: Caffe2's config aliases protobuf::libprotobuf to a dummy target
# when no protobuf target exists yet, which would leave gRPC and us unlinked.
find_package(Protobuf REQUIRED)

# LibTorch and MPI: only models/, distributed/, train/ and the CLI use them.
if(CLIPSCALE_WITH_TORCH)
  # LibTorch's config looks for CUDA itself when the wheel was built with it.
  if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(ENV{TORCH_CUDA_ARCH_LIST} "9.0")  # H100/H200; torch ignores CMAKE_CUDA_ARCHITECTURES
  endif()
  find_package(Torch REQUIRED)
  add_library(clipscale_torch INTERFACE)
  target_link_libraries(clipscale_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(clipscale_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
  target_compile_options(clipscale_torch INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:${TORCH_CXX_FLAGS}>)

  # A precompiled header of the LibTorch API that the torch-using libraries reuse.
  file(WRITE ${CMAKE_BINARY_DIR}/clipscale_torch_pch.cc "")
  add_library(clipscale_torch_pch STATIC ${CMAKE_BINARY_DIR}/clipscale_torch_pch.cc)
  target_link_libraries(clipscale_torch_pch PUBLIC clipscale_torch PRIVATE clipscale_warnings)
  target_precompile_headers(clipscale_torch_pch PRIVATE <torch/torch.h>)

  find_package(MPI REQUIRED COMPONENTS C)
  # Only the C API is used; keep the deprecated C++ bindings out of every TU.
  target_compile_definitions(MPI::MPI_C INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
endif()

# --- The Debian libraries ---------------------------------------------------------
find_package(absl REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(GTest REQUIRED)
find_package(benchmark REQUIRED)
find_package(PNG REQUIRED)
find_package(ZLIB REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
pkg_check_modules(TURBOJPEG REQUIRED IMPORTED_TARGET libturbojpeg)
pkg_check_modules(WEBP REQUIRED IMPORTED_TARGET libwebp)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)  # http(s):// shard sources

if(CLIPSCALE_WITH_TORCH)
  message(STATUS "clipscale: torch ${Torch_VERSION}, CUDA ${CLIPSCALE_HAVE_CUDA}, NCCL ${CLIPSCALE_HAVE_NCCL}")
else()
  message(STATUS "clipscale: core/ and data/ only (CLIPSCALE_WITH_TORCH=OFF)")
endif()

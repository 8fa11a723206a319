# Build options. SEQMIX_CUDA=AUTO builds CUDA code when a CUDA compiler is found and otherwise
# falls back to a CPU-only build with a message; ON makes a missing toolkit an error.
set(SEQMIX_CUDA "AUTO" CACHE STRING "Build CUDA kernels: AUTO, ON or OFF")
set_property(CACHE SEQMIX_CUDA PROPERTY STRINGS AUTO ON OFF)
option(SEQMIX_BUILD_TESTS "Build the GoogleTest suites" ON)
option(SEQMIX_WERROR "Treat compiler warnings as errors" OFF)

set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

set(SEQMIX_WITH_CUDA OFF)
if(NOT SEQMIX_CUDA STREQUAL "OFF")
  # A toolkit in the conventional place counts as found even when nvcc is not on PATH.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      set(CMAKE_CUDA_ARCHITECTURES "80;90a" CACHE STRING "CUDA architectures" FORCE)
    endif()
    enable_language(CUDA)
    # CMake < 3.27 does not know nvcc's C++20 flag; teach it.
    if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
      set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
      set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
    endif()
    set(CMAKE_CUDA_STANDARD 20)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(SEQMIX_WITH_CUDA ON)
  elseif(SEQMIX_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SEQMIX_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  else()
    message(STATUS "seqmix: no CUDA toolkit found; building CPU-only")
  endif()
endif()

# Warnings for our own targets.
add_library(seqmix_warnings INTERFACE)
target_compile_options(seqmix_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${SEQMIX_WERROR}>>:-Werror>)

# Numerics: no fused multiply-add contraction on the host, so the host code computes exactly what
# it says (the RNG's normal transform is bit-identical on CPU and GPU because both sides call
# fmaf explicitly). CUDA code is never built with fast-math: IEEE division and sqrt.
add_library(seqmix_numerics INTERFACE)
target_compile_options(seqmix_numerics INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -Xcompiler=-ffp-contract=off>)

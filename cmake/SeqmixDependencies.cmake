# Every dependency comes from the distribution (apt) or the CUDA toolkit; nothing is downloaded.
find_package(Threads REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(HDF5 REQUIRED COMPONENTS C)

set(BLA_VENDOR OpenBLAS)
find_package(BLAS REQUIRED)
find_path(SEQMIX_CBLAS_INCLUDE_DIR cblas.h
  PATHS /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu /usr/include/openblas
  REQUIRED)
add_library(seqmix_cblas INTERFACE)
target_link_libraries(seqmix_cblas INTERFACE BLAS::BLAS)
target_include_directories(seqmix_cblas SYSTEM INTERFACE ${SEQMIX_CBLAS_INCLUDE_DIR})

# yaml-cpp's exported target name differs between versions.
if(TARGET yaml-cpp::yaml-cpp)
  set(SEQMIX_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(SEQMIX_YAML_TARGET yaml-cpp)
endif()

if(SEQMIX_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()

if(SEQMIX_WITH_CUDA)
  find_package(CUDAToolkit REQUIRED)
  find_path(SEQMIX_NCCL_INCLUDE_DIR nccl.h
    HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/include /usr/local/include)
  find_library(SEQMIX_NCCL_LIBRARY nccl
    HINTS ${CUDAToolkit_LIBRARY_DIR} /usr/lib/x86_64-linux-gnu /usr/local/lib)
  if(SEQMIX_NCCL_INCLUDE_DIR AND SEQMIX_NCCL_LIBRARY)
    add_library(seqmix_nccl INTERFACE)
    target_include_directories(seqmix_nccl SYSTEM INTERFACE ${SEQMIX_NCCL_INCLUDE_DIR})
    target_link_libraries(seqmix_nccl INTERFACE ${SEQMIX_NCCL_LIBRARY})
    set(SEQMIX_WITH_NCCL ON)
  else()
    message(STATUS "seqmix: NCCL not found; multi-GPU training disabled")
    set(SEQMIX_WITH_NCCL OFF)
  endif()
endif()

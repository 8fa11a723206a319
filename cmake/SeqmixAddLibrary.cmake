# seqmix_add_folder_library(<target> <folder> DEPS ... [EXCLUDE file...])
#
# One library per source folder (ARCHITECTURE.md §1). Sources are found by glob so a new file
# needs no CMake edit: every *.cpp below the folder, and every *.cu in CUDA builds (files named
# *_cuda.cpp are host code calling CUDA libraries and are compiled only in CUDA builds too).
# A folder with no sources yet becomes an INTERFACE target that forwards its dependencies.
function(seqmix_add_folder_library target folder)
  cmake_parse_arguments(L "" "" "DEPS;EXCLUDE" ${ARGN})
  file(GLOB_RECURSE _cpp CONFIGURE_DEPENDS ${folder}/*.cpp)
  file(GLOB_RECURSE _cu CONFIGURE_DEPENDS ${folder}/*.cu)
  file(GLOB_RECURSE _cuda_cpp CONFIGURE_DEPENDS ${folder}/*_cuda.cpp)
  foreach(x IN LISTS L_EXCLUDE)
    list(REMOVE_ITEM _cpp ${x})
  endforeach()
  if(_cuda_cpp)
    list(REMOVE_ITEM _cpp ${_cuda_cpp})
  endif()
  set(_srcs ${_cpp})
  if(SEQMIX_WITH_CUDA)
    list(APPEND _srcs ${_cu} ${_cuda_cpp})
  endif()
  if(_srcs)
    add_library(${target} ${_srcs})
    target_link_libraries(${target} PUBLIC ${L_DEPS} PRIVATE seqmix_warnings seqmix_numerics)
  else()
    add_library(${target} INTERFACE)
    target_link_libraries(${target} INTERFACE ${L_DEPS})
  endif()
endfunction()

# seqmix_add_op(<folder>): adds a fused-op folder under kernels/ to the seqmix_kernels library.
# Host sources are every *.cpp in the folder; CUDA sources (*.cu) only in CUDA builds. The folder
# needs no CMakeLists.txt of its own: adding an op is one line in kernels/CMakeLists.txt.
function(seqmix_add_op folder)
  file(GLOB _cpp CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${folder}/*.cpp)
  target_sources(seqmix_kernels PRIVATE ${_cpp})
  if(SEQMIX_WITH_CUDA)
    file(GLOB _cu CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${folder}/*.cu)
    target_sources(seqmix_kernels PRIVATE ${_cu})
  endif()
endfunction()

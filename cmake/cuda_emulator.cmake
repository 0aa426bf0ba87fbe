# The CUDA backend on the CPU emulator (NN_CUDA_EMULATOR; see
# tests/cuda_emulator/emulator.hpp): each cuda/*.cu file, its launches
# rewritten by emulate_cu.cmake, is compiled by g++ with device_code.hpp
# force-included, and libnn links the emulator instead of the CUDA runtime,
# cuBLAS and cuBLASLt. The emulator is a shared library, so that a program
# and libnn share one emulated device (its memory, streams and errors).
set(NN_EMULATOR_DIR ${PROJECT_SOURCE_DIR}/tests/cuda_emulator)

add_library(nn_cuda_emulator SHARED
  ${NN_EMULATOR_DIR}/runtime.cpp
  ${NN_EMULATOR_DIR}/order_check.cpp
  ${NN_EMULATOR_DIR}/host_guard.cpp
  ${NN_EMULATOR_DIR}/kernels.cpp
  ${NN_EMULATOR_DIR}/blas.cpp
  ${NN_EMULATOR_DIR}/rand.cpp)
set_target_properties(nn_cuda_emulator PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
# initial-exec TLS: the emulator is linked, never dlopen()ed, and its
# thread-locals (the running thread's indices) are read for every access
# a kernel makes to threadIdx.
target_compile_options(nn_cuda_emulator PRIVATE -Wall -Wextra -ffp-contract=off
  -ftls-model=initial-exec)
target_include_directories(nn_cuda_emulator PUBLIC ${CUDAToolkit_INCLUDE_DIRS}
  PRIVATE ${NN_EMULATOR_DIR})
# cuRAND after the emulator, which stands in for its device generators
# and calls its host generators underneath.
target_link_libraries(nn_cuda_emulator PUBLIC CUDA::curand
  PRIVATE PkgConfig::OPENBLAS Threads::Threads)

# The emulated form of a .cu file (a path from the source root), in out.
function(nn_emulated_cu source out)
  get_filename_component(name ${source} NAME_WE)
  set(emulated ${PROJECT_BINARY_DIR}/emulated/${name}.cpp)
  add_custom_command(OUTPUT ${emulated}
    COMMAND ${CMAKE_COMMAND} -DINPUT=${PROJECT_SOURCE_DIR}/${source}
            -DOUTPUT=${emulated} -P ${PROJECT_SOURCE_DIR}/cmake/emulate_cu.cmake
    DEPENDS ${PROJECT_SOURCE_DIR}/${source} ${PROJECT_SOURCE_DIR}/cmake/emulate_cu.cmake
    COMMENT "Emulated CUDA: ${source}")
  set_source_files_properties(${emulated} PROPERTIES
    COMPILE_OPTIONS "-include;${NN_EMULATOR_DIR}/device_code.hpp;-ffp-contract=off;-Wall;-Wextra"
    INCLUDE_DIRECTORIES "${PROJECT_SOURCE_DIR}/cuda;${NN_EMULATOR_DIR}")
  set(${out} ${emulated} PARENT_SCOPE)
endfunction()

set(NN_EMULATED_SOURCES "")
foreach(source ${NN_SOURCES})
  if(source MATCHES "\\.cu$")
    nn_emulated_cu(${source} emulated)
    list(APPEND NN_EMULATED_SOURCES ${emulated})
  else()
    list(APPEND NN_EMULATED_SOURCES ${source})
  endif()
endforeach()
set(NN_SOURCES ${NN_EMULATED_SOURCES})
set(CMAKE_CXX_STANDARD 17)
set(NN_CUDA_LIBS nn_cuda_emulator CUDA::curand stdc++)
# libnn's calls of cuRAND's device-generator API, renamed to the emulator's
# stand-ins (tests/cuda_emulator/rand.cpp); applied to nn_objects.
set(NN_EMULATOR_DEFINITIONS "")
foreach(call curandCreateGenerator curandDestroyGenerator curandSetStream
             curandGenerateUniform curandGenerateNormal)
  list(APPEND NN_EMULATOR_DEFINITIONS ${call}=nnemu_${call})
endforeach()

# Site-side training: hansa_trainer is the only target that compiles torch code. The model
# layouts it trains (hansa_model) and the data it reads (hansa_data) are torch-free.
hansa_library(hansa_trainer
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/trainer.cc ${CMAKE_CURRENT_LIST_DIR}/dp_sgd.cc
          ${CMAKE_CURRENT_LIST_DIR}/models_torch.cc ${CMAKE_CURRENT_LIST_DIR}/parallel_group.cc ${CMAKE_CURRENT_LIST_DIR}/rendezvous.cc
          ${CMAKE_CURRENT_LIST_DIR}/data_parallel.cc ${CMAKE_CURRENT_LIST_DIR}/nccl_group.cc
          ${CMAKE_CURRENT_LIST_DIR}/torchscript.cc
  DEPS hansa_cores hansa_data hansa_model hansa_metrics hansa_tensor hansa_privacy hansa_crypto hansa_fileio hansa_status
       absl::strings
       nlohmann_json::nlohmann_json spdlog::spdlog)
# Torch stays PRIVATE: users of trainer.h get neither its include paths nor its flags, only
# its libraries at link time (PRIVATE deps of a static library still propagate for linking).
target_link_libraries(hansa_trainer PRIVATE ${TORCH_LIBRARIES})
# ProcessGroupGloo's header includes Gloo's: Debian's LibTorch links the shared libgloo
# (libgloo-dev); a LibTorch 2.x from PyTorch carries Gloo's headers in its own include dir.
# A CUDA LibTorch carries Gloo inside it: there Debian's headers (if they are the ones found)
# serve only to compile, and its library is not linked beside torch's own.
find_package(Gloo CONFIG QUIET)
if(TARGET gloo AND NOT TORCH_CUDA_LIBRARIES)
  target_link_libraries(hansa_trainer PRIVATE gloo)
elseif(TARGET gloo)
  target_include_directories(hansa_trainer PRIVATE $<TARGET_PROPERTY:gloo,INTERFACE_INCLUDE_DIRECTORIES>)
endif()
# NCCL comes with a CUDA LibTorch; then data-parallel GPU sites use ProcessGroupNCCL.
if(TORCH_CUDA_LIBRARIES)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/nccl_group.cc PROPERTIES
    COMPILE_DEFINITIONS "HANSA_WITH_NCCL;USE_C10D_NCCL")
elseif(HANSA_CUDA_FOUND)
  # A CPU LibTorch cannot link ProcessGroupNCCL, but its headers and NCCL's are here: compile
  # the NCCL path anyway (not linked), so that it cannot rot on machines without a GPU.
  find_path(HANSA_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} /usr/local/cuda/include)
  if(HANSA_NCCL_INCLUDE)
    # The one header a CPU LibTorch's install lacks: CMake generates it in a CUDA build.
    set(shim ${CMAKE_CURRENT_BINARY_DIR}/nccl_check_include)
    file(WRITE ${shim}/c10/cuda/impl/cuda_cmake_macros.h
         "#pragma once\n// Stand-in for the header a CUDA build of LibTorch generates.\n"
         "#define C10_CUDA_BUILD_SHARED_LIBS\n")
    add_library(hansa_nccl_compile_check OBJECT ${CMAKE_CURRENT_LIST_DIR}/nccl_group.cc)
    target_compile_definitions(hansa_nccl_compile_check PRIVATE HANSA_WITH_NCCL USE_C10D_NCCL)
    target_include_directories(hansa_nccl_compile_check PRIVATE ${PROJECT_SOURCE_DIR}
      ${TORCH_INCLUDE_DIRS} ${CUDAToolkit_INCLUDE_DIRS} ${HANSA_NCCL_INCLUDE} ${shim})
    target_link_libraries(hansa_nccl_compile_check PRIVATE hansa_status)
    target_compile_options(hansa_nccl_compile_check PRIVATE ${TORCH_CXX_FLAGS})
  endif()
endif()

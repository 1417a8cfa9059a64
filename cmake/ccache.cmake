# Use ccache when present: LibTorch and generated gRPC code are slow to compile.
find_program(HANSA_CCACHE ccache)
if(HANSA_CCACHE)
  set(CMAKE_C_COMPILER_LAUNCHER ${HANSA_CCACHE})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${HANSA_CCACHE})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${HANSA_CCACHE})
endif()

# Fails when BINARY loads LibTorch (libtorch*, libc10*), as `ldd` lists it.
# Run: cmake -DBINARY=<path> -P no_torch.cmake
if(NOT BINARY OR NOT EXISTS "${BINARY}")
  message(FATAL_ERROR "no_torch.cmake: BINARY '${BINARY}' does not exist; build it first")
endif()
execute_process(COMMAND ldd "${BINARY}" OUTPUT_VARIABLE libs ERROR_VARIABLE err
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "no_torch.cmake: ldd ${BINARY} failed (${rc}): ${err}")
endif()
string(REGEX MATCHALL "lib(torch|c10)[^ \t\n]*" torch_libs "${libs}")
if(torch_libs)
  list(REMOVE_DUPLICATES torch_libs)
  string(JOIN " " torch_libs ${torch_libs})
  message(STATUS "${BINARY} links LibTorch: ${torch_libs}")
  message(FATAL_ERROR "Link hansa_model (model layouts, torch-free) instead of hansa_trainer")
endif()
message(STATUS "${BINARY} links no LibTorch")

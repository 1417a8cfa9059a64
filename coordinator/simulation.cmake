# Strategies (torch-free, for the round engine and the simulator) and the simulator library
# behind `hansa simulate`. Included from coordinator/CMakeLists.txt.
hansa_library(hansa_strategy
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/strategy.cc
  DEPS hansa_status hansa_tensor absl::strings)

# Strategies (torch-free, for the round engine and the simulator) and the simulator library
# behind `hansa simulate`. Included from coordinator/CMakeLists.txt.
hansa_library(hansa_strategy
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/strategy.cc
  DEPS hansa_status hansa_tensor absl::strings)

# The simulator: virtual sites as threads over the real RoundEngine and Trainer.
hansa_library(hansa_simulate
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/simulation.cc ${CMAKE_CURRENT_LIST_DIR}/experiment.cc
          ${CMAKE_CURRENT_LIST_DIR}/svg_plot.cc
  DEPS hansa_strategy hansa_partition hansa_coordinator_core hansa_trainer hansa_data
       hansa_models hansa_config hansa_tensor hansa_fileio hansa_crypto
       nlohmann_json::nlohmann_json absl::strings absl::str_format)

# Strategies (torch-free, for the round engine and the simulator) and the simulator library
# behind `hansa simulate`. Included from coordinator/CMakeLists.txt.
hansa_library(hansa_strategy
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/strategy.cc
  DEPS hansa_status hansa_tensor absl::strings)

# A site's calls to a coordinator, in process or over gRPC on loopback with mutual TLS
# (torch-free: the simulator's transport, usable by benchmarks).
hansa_library(hansa_site_link
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/site_link.cc
  DEPS hansa_coordinator_service hansa_coordinator_core hansa_net hansa_pki hansa_proto
       hansa_crypto gRPC::grpc++ absl::strings absl::time)

# The simulator: virtual sites as threads over the real RoundEngine and Trainer.
hansa_library(hansa_simulate
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/simulation.cc ${CMAKE_CURRENT_LIST_DIR}/experiment.cc
          ${CMAKE_CURRENT_LIST_DIR}/svg_plot.cc
  DEPS hansa_strategy hansa_partition hansa_coordinator_core hansa_site_link hansa_trainer hansa_data
       hansa_models hansa_config hansa_tensor hansa_fileio hansa_crypto
       nlohmann_json::nlohmann_json absl::strings absl::str_format)

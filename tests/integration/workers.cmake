# `hansa simulate` with [experiment] workers = 2: two real processes meeting through a TCPStore,
# against the one-process run.
hansa_test(simulate_workers_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/workers_test.cc
  LIBS hansa_integration_harness nlohmann_json::nlohmann_json
  LABELS integration TIMEOUT 600)
add_dependencies(simulate_workers_test hansa)
target_compile_definitions(simulate_workers_test PRIVATE
  HANSA_SOURCE_DIR_FALLBACK="${PROJECT_SOURCE_DIR}" HANSA_BUILD_DIR_FALLBACK="${PROJECT_BINARY_DIR}")

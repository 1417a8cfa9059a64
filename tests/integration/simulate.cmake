# `hansa simulate` end to end on examples/niid-bench/tiny.toml: the real binary, real data.
hansa_test(simulate_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/simulate_test.cc
  LIBS nlohmann_json::nlohmann_json
  LABELS integration TIMEOUT 600)
add_dependencies(simulate_test hansa)
# hansa_test's ENVIRONMENT list reaches the test with only its first entry, so the paths are
# also compiled in.
target_compile_definitions(simulate_test PRIVATE
  HANSA_SOURCE_DIR_FALLBACK="${PROJECT_SOURCE_DIR}" HANSA_BUILD_DIR_FALLBACK="${PROJECT_BINARY_DIR}")

# Every dependency is a Debian 12 package (see scripts/install-deps.sh). A CUDA build of
# LibTorch 2.x can be given instead through CMAKE_PREFIX_PATH.
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(ZLIB REQUIRED)
find_package(PNG REQUIRED)   # libpng-dev: image-folder data sets
find_package(JPEG REQUIRED)  # libjpeg62-turbo-dev: image-folder data sets
# libdcmtk-dev: DICOM data sets. Its config gives the imported targets DCMTK::dcmdata,
# DCMTK::dcmimgle (rescale and windowing) and the decoders DCMTK::dcmjpeg, DCMTK::dcmjpls.
find_package(DCMTK CONFIG REQUIRED)
find_package(tomlplusplus CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
find_package(Torch REQUIRED)
find_package(civetweb CONFIG REQUIRED)        # libcivetweb-dev: the monitoring HTTP server
find_package(prometheus-cpp CONFIG REQUIRED)  # prometheus-cpp-dev: metrics (core only)
if(HANSA_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(HANSA_BUILD_BENCH)
  find_package(benchmark REQUIRED)
endif()
find_program(HANSA_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

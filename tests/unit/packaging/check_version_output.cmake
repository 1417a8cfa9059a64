# cmake -DPROGRAM=FILE -DNAME=NAME -DVERSION=V -DBUILD_TYPE=T -DCUDA=yes|no -P check_version_output.cmake
# Runs `PROGRAM --version` and fails unless it exits 0 and prints the four fields of
# common/version/version.h with these values.
execute_process(COMMAND ${PROGRAM} --version OUTPUT_VARIABLE out ERROR_VARIABLE err
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NAME} --version exited with ${rc}: ${out}${err}")
endif()
string(REPLACE "." "\\." version_re "${VERSION}")
set(expected "^${NAME} ${version_re}\ncommit: ([0-9a-f]+(-dirty)?|unknown)\nbuild: ${BUILD_TYPE}\ncuda: ${CUDA}\n$")
if(NOT out MATCHES "${expected}")
  message(FATAL_ERROR "${NAME} --version printed\n${out}\nexpected to match\n${expected}")
endif()
message(STATUS "${NAME} --version:\n${out}")

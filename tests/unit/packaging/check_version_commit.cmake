# cmake -DSCRIPT=cmake/write_version_commit.cmake -DWORK=DIR -P check_version_commit.cmake
# The commit that --version reports cannot go stale: in a scratch git repository, the header
# follows each new commit and an edit of a tracked file ("-dirty"), and is left untouched
# (same time stamp, so nothing recompiles) when nothing changed.
find_program(git git REQUIRED)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/src")
set(header "${WORK}/hansa_version_commit.h")
function(run_git)
  execute_process(COMMAND ${git} -C "${WORK}/src" -c user.name=hansa-test
                          -c user.email=test@hansa.invalid ${ARGN}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "git ${ARGN}: ${err}")
  endif()
  set(git_out "${out}" PARENT_SCOPE)
endfunction()
function(expect_commit want)
  execute_process(COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${WORK}/src -DOUTPUT=${header}
                          -P ${SCRIPT} RESULT_VARIABLE rc)
  file(READ "${header}" text)
  if(NOT rc EQUAL 0 OR NOT text MATCHES "#define HANSA_GIT_COMMIT \"${want}\"")
    message(FATAL_ERROR "after ${ARGN}: expected commit ${want}, header holds:\n${text}")
  endif()
endfunction()

run_git(init -q)
file(WRITE "${WORK}/src/a.txt" "one\n")
run_git(add a.txt)
run_git(commit -q -m one)
run_git(rev-parse --short=12 HEAD)
string(STRIP "${git_out}" first)
expect_commit("${first}" "the first commit")

# Unchanged: the header keeps its old time stamp.
execute_process(COMMAND touch -d "2001-01-01 00:00:00" "${header}")
expect_commit("${first}" "a build with nothing changed")
file(TIMESTAMP "${header}" stamp "%Y")
if(NOT stamp STREQUAL "2001")
  message(FATAL_ERROR "the header was rewritten although the commit did not change (${stamp})")
endif()

file(WRITE "${WORK}/src/a.txt" "two\n")
expect_commit("${first}-dirty" "an edit of a tracked file")

run_git(commit -q -a -m two)
run_git(rev-parse --short=12 HEAD)
string(STRIP "${git_out}" second)
if(second STREQUAL first)
  message(FATAL_ERROR "git made the same commit twice")
endif()
expect_commit("${second}" "a second commit")

# Outside a checkout (a source archive) the commit is $HANSA_GIT_COMMIT, else "unknown".
file(REMOVE_RECURSE "${WORK}/src/.git")
set(ENV{HANSA_GIT_COMMIT} "")
unset(ENV{HANSA_GIT_COMMIT})
expect_commit("unknown" "a tree without .git")
set(ENV{HANSA_GIT_COMMIT} "0123456789ab")
expect_commit("0123456789ab" "a tree without .git and HANSA_GIT_COMMIT set")
file(REMOVE_RECURSE "${WORK}")

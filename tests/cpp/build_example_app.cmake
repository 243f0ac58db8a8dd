# ctest script: installs this build into a staging prefix, then configures and builds examples/
# as an outside project that finds rnncore with find_package(rnncore CONFIG).
foreach(var RNNCORE_BUILD_DIR EXAMPLES_DIR STAGE_DIR GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "build_example_app.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

file(REMOVE_RECURSE "${STAGE_DIR}/prefix" "${STAGE_DIR}/build")
run(${CMAKE_COMMAND} --install "${RNNCORE_BUILD_DIR}" --prefix "${STAGE_DIR}/prefix" --config ${CONFIG})
run(${CMAKE_COMMAND} -S "${EXAMPLES_DIR}" -B "${STAGE_DIR}/build" -G "${GENERATOR}"
    -DCMAKE_BUILD_TYPE=${CONFIG} "-DCMAKE_PREFIX_PATH=${STAGE_DIR}/prefix")
run(${CMAKE_COMMAND} --build "${STAGE_DIR}/build" --config ${CONFIG})

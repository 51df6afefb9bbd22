# Builds and runs tests/install/consumer against capkv, either installed (MODE=install) or as a
# subdirectory (MODE=subdirectory). Run with cmake -P; every step must succeed.
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
endfunction()

# CUDA=ON (the outer build has the CUDA backend) adds the capkv::cuda consumer to the install mode,
# the one that proves the package exports it; the subdirectory mode stays CPU-only, since nvcc
# costs some 20 s per consumer on a 2-core machine and the repository's own build already consumes
# capkv::cuda as a subproject target.
if(NOT CUDA OR NOT MODE STREQUAL "install")
  set(CUDA OFF)
endif()
set(work ${BINARY_DIR}/consumer-${MODE})
file(REMOVE_RECURSE ${work})
if(MODE STREQUAL "install")
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${work}/capkv -DCAPKV_BUILD_TESTS=OFF
      -DCAPKV_BUILD_BENCH=OFF -DCAPKV_BUILD_EXAMPLES=OFF -DCAPKV_CUDA=${CUDA}
      -DCMAKE_INSTALL_PREFIX=${work}/prefix)
  run(${CMAKE_COMMAND} --install ${work}/capkv)
  set(how -DCMAKE_PREFIX_PATH=${work}/prefix)
else()
  set(how -DCAPKV_SOURCE_DIR=${SOURCE_DIR})
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${work}/build ${how}
    -DCONSUMER_CUDA=${CUDA})
run(${CMAKE_COMMAND} --build ${work}/build)
run(${work}/build/consumer)
if(CUDA)
  run(${work}/build/consumer_cuda)
endif()

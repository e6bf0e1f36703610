# The README's demo, run against this build's binaries (so also under the
# sanitizers): it fails unless every agent registers, the VMs are placed and the
# reclaimed capacity it prints is > 0 (see scripts/demo.sh).
add_test(NAME demo_ci COMMAND ${CMAKE_SOURCE_DIR}/scripts/demo.sh --ci --bin ${CMAKE_BINARY_DIR}
                              --out ${CMAKE_BINARY_DIR})
set_tests_properties(demo_ci PROPERTIES LABELS "integration;demo" TIMEOUT 400
                     ENVIRONMENT "${KS_TEST_ENV}")

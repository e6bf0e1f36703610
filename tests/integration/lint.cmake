# STYLE.md's banned functions (scripts/checksrc.sh) are part of the suite.
add_test(NAME checksrc COMMAND ${CMAKE_SOURCE_DIR}/scripts/checksrc.sh)
set_tests_properties(checksrc PROPERTIES LABELS "lint" TIMEOUT 60)

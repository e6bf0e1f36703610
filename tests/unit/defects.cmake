# Defect detection (issue 4): the CPU feature self-tests (agent/selftest/) and the
# defect sources (agent/ks_defects*.c).  Their sources are compiled into the tests
# directly so that other agent modules being written at the same time cannot break
# them.  test_ks_selftest also runs the built kintsugi-agent binary end to end.
file(GLOB KS_SELFTEST_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/agent/selftest/*.c)
set(KS_DEFECTS_TEST_SOURCES ${KS_SELFTEST_TEST_SOURCES}
    ${CMAKE_SOURCE_DIR}/agent/ks_defects.c ${CMAKE_SOURCE_DIR}/agent/ks_defects_sysfs.c)
ks_add_unit_test(test_ks_selftest
                 SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_selftest.c ${KS_DEFECTS_TEST_SOURCES}
                 LIBS ks-common LABELS agent TIMEOUT 120)
target_include_directories(test_ks_selftest PRIVATE ${CMAKE_SOURCE_DIR}/agent
                           ${CMAKE_SOURCE_DIR}/agent/selftest)
if(TARGET kintsugi-agent)
    add_dependencies(test_ks_selftest kintsugi-agent)
endif()
ks_add_unit_test(test_ks_defects
                 SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_defects.c ${KS_DEFECTS_TEST_SOURCES}
                 LIBS ks-common LABELS agent TIMEOUT 120)
target_include_directories(test_ks_defects PRIVATE ${CMAKE_SOURCE_DIR}/agent
                           ${CMAKE_SOURCE_DIR}/agent/selftest)

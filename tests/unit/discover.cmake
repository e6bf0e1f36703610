# Agent discovery (agent/ks_discover*.c, agent/ks_cpuid.c, agent/cmd_report.c) and the
# agent's reporting client (agent/ks_agent_client.c).  The sources are compiled into
# the test directly so that it does not depend on the rest of libks-agent.
set(KS_DISCOVER_TEST_SOURCES
    ${CMAKE_SOURCE_DIR}/agent/ks_discover.c ${CMAKE_SOURCE_DIR}/agent/ks_discover_fixture.c
    ${CMAKE_SOURCE_DIR}/agent/ks_discover_os.c ${CMAKE_SOURCE_DIR}/agent/ks_cpuid.c
    ${CMAKE_SOURCE_DIR}/agent/cmd_report.c)
if(EXISTS ${CMAKE_SOURCE_DIR}/agent/ks_agent_client.c)
    list(APPEND KS_DISCOVER_TEST_SOURCES ${CMAKE_SOURCE_DIR}/agent/ks_agent_client.c)
endif()
ks_add_unit_test(test_ks_discover
                 SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_discover.c ${KS_DISCOVER_TEST_SOURCES}
                 LIBS ks-common PkgConfig::HWLOC PkgConfig::CURL PkgConfig::MHD
                 LABELS agent TIMEOUT 120)
target_include_directories(test_ks_discover PRIVATE ${CMAKE_SOURCE_DIR}/agent)

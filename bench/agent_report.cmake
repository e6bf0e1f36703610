# agent_report: wall time and peak RSS of a full host report (discovery + JSON) on the
# 256-PU fixture, the 128-PU AMD fixture and the live host.  Discovery sources are
# compiled in directly so the bench does not depend on the rest of libks-agent.
add_executable(agent_report ${CMAKE_CURRENT_SOURCE_DIR}/agent_report.c
               ${CMAKE_SOURCE_DIR}/agent/ks_discover.c ${CMAKE_SOURCE_DIR}/agent/ks_discover_fixture.c
               ${CMAKE_SOURCE_DIR}/agent/ks_discover_os.c ${CMAKE_SOURCE_DIR}/agent/ks_cpuid.c)
target_include_directories(agent_report PRIVATE ${CMAKE_SOURCE_DIR}/agent)
target_link_libraries(agent_report PRIVATE ks-common PkgConfig::HWLOC)
target_compile_definitions(agent_report PRIVATE KS_BENCH_FIXTURES_DIR="${KS_FIXTURES_DIR}")
if(KS_BUILD_TESTS)
    # One run of each scenario: proves the bench works, not a measurement.
    add_test(NAME bench_agent_report COMMAND agent_report --runs 1)
    set_tests_properties(bench_agent_report PROPERTIES LABELS "bench;agent" TIMEOUT 120
                         ENVIRONMENT "KS_FIXTURES_DIR=${KS_FIXTURES_DIR}")
endif()

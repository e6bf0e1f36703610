# Placement engine tests (scheduler/, libks-sched): table-driven cases and the
# randomised property test (fixed seeds, bounded steps).
ks_add_unit_test(test_ks_sched SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_sched.c
                 LIBS ks-sched ks-common TIMEOUT 60)
ks_add_unit_test(test_ks_sched_prop SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_sched_prop.c
                 LIBS ks-sched ks-common TIMEOUT 300)
# Placement on fleets of recorded machines: reports come from agent discovery of
# the hwloc fixtures (the discovery sources are compiled in, as test_ks_discover does).
ks_add_unit_test(test_ks_sched_fixtures
                 SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_sched_fixtures.c
                         ${CMAKE_SOURCE_DIR}/agent/ks_discover.c
                         ${CMAKE_SOURCE_DIR}/agent/ks_discover_fixture.c
                         ${CMAKE_SOURCE_DIR}/agent/ks_discover_os.c
                         ${CMAKE_SOURCE_DIR}/agent/ks_cpuid.c
                 LIBS ks-sched ks-common PkgConfig::HWLOC LABELS agent TIMEOUT 120)
target_include_directories(test_ks_sched_fixtures PRIVATE ${CMAKE_SOURCE_DIR}/agent)

# Placement engine tests (scheduler/, libks-sched): table-driven cases and the
# randomised property test (fixed seeds, bounded steps).
ks_add_unit_test(test_ks_sched SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_sched.c
                 LIBS ks-sched ks-common TIMEOUT 60)
ks_add_unit_test(test_ks_sched_prop SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_sched_prop.c
                 LIBS ks-sched ks-common TIMEOUT 300)

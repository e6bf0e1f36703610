# Reliability (issue 10): crash safety under SIGKILL (tests/crash/), hostile API
# clients and agent resilience against a real kintsugid on loopback.
ks_add_integration_test(test_crash SOURCES ${CMAKE_SOURCE_DIR}/tests/crash/test_crash.c
                        LIBS ks-db ks-common DEPENDS kintsugid LABELS "crash;reliability"
                        TIMEOUT 240)
ks_add_integration_test(test_hostile SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_hostile.c
                        LIBS ks-common DEPENDS kintsugid LABELS "hostile;reliability"
                        TIMEOUT 180)

# Reliability (issue 10): crash safety under SIGKILL (tests/crash/), hostile API
# clients and agent resilience against a real kintsugid on loopback.
ks_add_integration_test(test_crash SOURCES ${CMAKE_SOURCE_DIR}/tests/crash/test_crash.c
                        LIBS ks-db ks-common DEPENDS kintsugid LABELS "crash;reliability"
                        TIMEOUT 240)

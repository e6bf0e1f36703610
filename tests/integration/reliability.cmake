# Reliability (issue 10): crash safety under SIGKILL (tests/crash/), hostile API
# clients and agent resilience against a real kintsugid on loopback.
ks_add_integration_test(test_crash SOURCES ${CMAKE_SOURCE_DIR}/tests/crash/test_crash.c
                        LIBS ks-db ks-common DEPENDS kintsugid LABELS "crash;reliability"
                        TIMEOUT 240)
ks_add_integration_test(test_hostile SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_hostile.c
                        LIBS ks-common DEPENDS kintsugid LABELS "hostile;reliability"
                        TIMEOUT 180)
# deploy/: systemd-analyze verify on both units, kintsugid.conf.example keys
# against kintsugid --help/--print-config, defects.json.example is JSON.
add_test(NAME test_deploy COMMAND sh ${CMAKE_SOURCE_DIR}/deploy/verify.sh ${CMAKE_BINARY_DIR})
set_tests_properties(test_deploy PROPERTIES LABELS "integration;reliability" TIMEOUT 60)
ks_add_integration_test(test_agent_resilience
                        SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_agent_resilience.c
                        LIBS ks-common DEPENDS kintsugid kintsugi-agent
                        LABELS "reliability;agent" TIMEOUT 240)
# kintsugid under a fake systemd: READY / WATCHDOG / RELOADING / STOPPING.
ks_add_integration_test(test_daemon_lifecycle
                        SOURCES ${CMAKE_SOURCE_DIR}/tests/crash/test_daemon_lifecycle.c
                        LIBS ks-common DEPENDS kintsugid LABELS "reliability" TIMEOUT 120)

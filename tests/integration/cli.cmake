# kintsugictl (cli/): the built binary run against a real kintsugid with a fleet
# registered from the recorded fixtures; every command, output format and error path.
ks_add_integration_test(test_cli SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_cli.c
                        LIBS ks-db ks-common
                        DEPENDS kintsugid kintsugi-agent kintsugictl LABELS cli TIMEOUT 90)

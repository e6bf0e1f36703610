# kintsugictl (cli/): the built binary run against a real kintsugid with a fleet
# registered from the recorded fixtures; every command, output format and error path.
ks_add_integration_test(test_cli SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_cli.c
                        LIBS ks-db ks-common
                        DEPENDS kintsugid kintsugi-agent kintsugictl LABELS cli TIMEOUT 90)

# The report's HTML in a real browser: headless Chromium builds the DOM and paints a
# screenshot that must show the charts.  Missing chromium fails (scripts/deps.sh --test).
ks_add_integration_test(test_report_render
                        SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_report_render.c
                                ${CMAKE_SOURCE_DIR}/cli/ks_cli_report.c
                                ${CMAKE_SOURCE_DIR}/cli/ks_cli_output.c
                                ${CMAKE_SOURCE_DIR}/cli/ks_cli_http.c
                        LIBS ks-common z LABELS cli TIMEOUT 90)
target_include_directories(test_report_render PRIVATE ${CMAKE_SOURCE_DIR}/cli)

# kintsugictl's capacity-report renderers (cli/ks_cli_report.c), compiled with the
# CLI's output and HTTP files; the few kintsugictl.c helpers are defined by the test.
ks_add_unit_test(test_ks_cli_report
                 SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_cli_report.c
                         ${CMAKE_SOURCE_DIR}/cli/ks_cli_report.c
                         ${CMAKE_SOURCE_DIR}/cli/ks_cli_output.c
                         ${CMAKE_SOURCE_DIR}/cli/ks_cli_http.c
                 LIBS ks-common PkgConfig::CURL LABELS cli TIMEOUT 60)
target_include_directories(test_ks_cli_report PRIVATE ${CMAKE_SOURCE_DIR}/cli)

ks_add_unit_test(test_ks_parse SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_parse.c
                 LIBS ks-common LABELS common)

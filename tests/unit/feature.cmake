# CPU feature catalogue and feature-set tests (common/ks_feature*.c, common/ks_bitset.c).
ks_add_unit_test(test_ks_feature SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_feature.c
                 LIBS ks-common TIMEOUT 60)
ks_add_unit_test(test_ks_bitset SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_bitset.c
                 LIBS ks-common TIMEOUT 60)

# Report / VM request / plan models and JSON codecs (common/ks_report.c, common/ks_vm.c).
ks_add_unit_test(test_ks_report SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_report.c
                 LIBS ks-common LABELS codec)
ks_add_unit_test(test_ks_vm SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_vm.c
                 LIBS ks-common LABELS codec)

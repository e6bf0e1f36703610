# sd_notify client (common/ks_sdnotify.c): a fake $NOTIFY_SOCKET receiver.
ks_add_unit_test(test_ks_sdnotify SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_sdnotify.c
                 LIBS ks-common LABELS sdnotify TIMEOUT 60)

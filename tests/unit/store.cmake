# The store (db/): SQLite backend behind ks_store.h.  Links SQLite itself to
# forge databases (a future schema version) the store must refuse.
ks_add_unit_test(test_ks_store SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_store.c
                 LIBS ks-db ks-common PkgConfig::SQLITE3 LABELS store TIMEOUT 300)

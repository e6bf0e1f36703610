# The store (db/) behind ks_store.h.  Links SQLite (and libpq when present)
# itself to forge or damage databases the store must refuse or report.
pkg_check_modules(KS_TEST_LIBPQ IMPORTED_TARGET libpq)
set(KS_STORE_TEST_LIBS ks-db ks-common PkgConfig::SQLITE3 Threads::Threads)
if(KS_TEST_LIBPQ_FOUND)
    list(APPEND KS_STORE_TEST_LIBS PkgConfig::KS_TEST_LIBPQ)
endif()
ks_add_unit_test(test_ks_store SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_store.c
                 LIBS ${KS_STORE_TEST_LIBS} LABELS store TIMEOUT 300)

# The same tests on PostgreSQL (label "pg", not "unit"): a throwaway cluster
# from Debian's postgresql package, started and stopped by ctest fixtures.  A
# missing PostgreSQL makes the setup fail, and with it these tests: never a skip.
string(MD5 KS_BUILD_HASH "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${KS_BUILD_HASH}" 0 10 KS_BUILD_HASH)
set(KS_PG_TEST_DIR "/tmp/ks-pg-${KS_BUILD_HASH}")
add_test(NAME pg_cluster_start
         COMMAND ${CMAKE_SOURCE_DIR}/scripts/pg-test-cluster.sh start ${KS_PG_TEST_DIR})
add_test(NAME pg_cluster_stop
         COMMAND ${CMAKE_SOURCE_DIR}/scripts/pg-test-cluster.sh stop ${KS_PG_TEST_DIR})
set_tests_properties(pg_cluster_start PROPERTIES FIXTURES_SETUP pg_cluster LABELS pg TIMEOUT 120)
set_tests_properties(pg_cluster_stop PROPERTIES FIXTURES_CLEANUP pg_cluster LABELS pg TIMEOUT 120)
add_test(NAME test_ks_store_pg COMMAND test_ks_store --pg)
set_tests_properties(test_ks_store_pg PROPERTIES LABELS "pg;store" TIMEOUT 300
                     FIXTURES_REQUIRED pg_cluster
                     ENVIRONMENT "${KS_TEST_ENV};KS_PG_DIR=${KS_PG_TEST_DIR}")

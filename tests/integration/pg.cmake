# Several scheduler replicas on one PostgreSQL (label "pg"): needs the
# throwaway cluster of the pg_cluster fixture (tests/unit/store.cmake); a
# missing PostgreSQL fails the fixture and with it this test.
pkg_check_modules(KS_PG_LIBPQ IMPORTED_TARGET libpq)
# Same socket directory as tests/unit/store.cmake computes (fragments are
# included in name order, so each computes it).
string(MD5 KS_BUILD_HASH "${CMAKE_BINARY_DIR}")
string(SUBSTRING "${KS_BUILD_HASH}" 0 10 KS_BUILD_HASH)
set(KS_PG_TEST_DIR "/tmp/ks-pg-${KS_BUILD_HASH}")
if(KS_PG_LIBPQ_FOUND)
    ks_add_integration_test(test_pg_replicas
                            SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_pg_replicas.c
                            LIBS ks-db ks-common PkgConfig::KS_PG_LIBPQ Threads::Threads
                            LABELS pg TIMEOUT 600)
    set_tests_properties(test_pg_replicas PROPERTIES FIXTURES_REQUIRED pg_cluster
                         ENVIRONMENT "${KS_TEST_ENV};KS_PG_DIR=${KS_PG_TEST_DIR}")
else()
    add_test(NAME test_pg_replicas COMMAND sh -c "echo 'libpq-dev is required' >&2; exit 1")
    set_tests_properties(test_pg_replicas PROPERTIES LABELS "integration;pg")
endif()

# Three real kintsugid replicas on one PostgreSQL behind parallel HTTP clients;
# the leader is killed and another takes over its jobs.
if(KS_PG_LIBPQ_FOUND)
    ks_add_integration_test(test_pg_api_replicas
                            SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_pg_api_replicas.c
                            LIBS ks-common PkgConfig::KS_PG_LIBPQ PkgConfig::JANSSON
                                 Threads::Threads
                            DEPENDS kintsugid LABELS pg TIMEOUT 900)
    set_tests_properties(test_pg_api_replicas PROPERTIES FIXTURES_REQUIRED pg_cluster
                         ENVIRONMENT "${KS_TEST_ENV};KS_PG_DIR=${KS_PG_TEST_DIR}")
endif()

# kintsugid migrate / backup between SQLite and PostgreSQL with the real binary,
# and kintsugid check on the SQLite store (damaged behind its back by SQLite).
if(KS_PG_LIBPQ_FOUND)
    ks_add_integration_test(test_pg_migrate
                            SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_pg_migrate.c
                            LIBS ks-common PkgConfig::KS_PG_LIBPQ PkgConfig::JANSSON
                                 PkgConfig::SQLITE3
                            DEPENDS kintsugid LABELS pg TIMEOUT 600)
    set_tests_properties(test_pg_migrate PROPERTIES FIXTURES_REQUIRED pg_cluster
                         ENVIRONMENT "${KS_TEST_ENV};KS_PG_DIR=${KS_PG_TEST_DIR}")
endif()

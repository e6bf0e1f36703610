# bench_pg: placements/s through the store with 1, 2, 3 replicas on PostgreSQL
# next to SQLite (prints figures; not a test).  Needs libpq and Debian's
# postgresql package (it starts a throwaway cluster unless given --pg-dir):
#   build-*/bench/bench_pg --replicas 1,2,3 --vms 3000
pkg_check_modules(KS_BENCH_LIBPQ IMPORTED_TARGET libpq)
if(KS_BENCH_LIBPQ_FOUND)
    add_executable(bench_pg ${CMAKE_CURRENT_SOURCE_DIR}/bench_pg.c)
    target_link_libraries(bench_pg PRIVATE ks-db ks-common PkgConfig::KS_BENCH_LIBPQ
                          Threads::Threads)
    target_compile_definitions(bench_pg PRIVATE
        KS_PG_CLUSTER_SCRIPT="${CMAKE_SOURCE_DIR}/scripts/pg-test-cluster.sh")
endif()

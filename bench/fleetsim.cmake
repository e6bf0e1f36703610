# Fleet simulator (library + `fleetsim` tool) and the benchmarks built on it:
# bench_place (durable in-process placement, scaling, cold start), bench_reclaim
# (Kintsugi vs offline-every-degraded-core), bench_api (kintsugid over loopback).
# Discovery sources are compiled in directly (as agent_report does) so the
# simulator does not depend on the rest of libks-agent.
add_library(ks-fleetsim STATIC
            ${CMAKE_CURRENT_SOURCE_DIR}/fleetsim.c ${CMAKE_CURRENT_SOURCE_DIR}/fleetsim_http.c
            ${CMAKE_CURRENT_SOURCE_DIR}/fleetsim_replay.c
            ${CMAKE_SOURCE_DIR}/agent/ks_discover.c ${CMAKE_SOURCE_DIR}/agent/ks_discover_fixture.c
            ${CMAKE_SOURCE_DIR}/agent/ks_discover_os.c ${CMAKE_SOURCE_DIR}/agent/ks_cpuid.c)
target_include_directories(ks-fleetsim PUBLIC ${CMAKE_CURRENT_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/agent)
target_link_libraries(ks-fleetsim PUBLIC ks-sched ks-db ks-common PkgConfig::HWLOC PkgConfig::CURL m)
target_compile_definitions(ks-fleetsim PUBLIC KS_BENCH_FIXTURES_DIR="${KS_FIXTURES_DIR}")

add_executable(fleetsim ${CMAKE_CURRENT_SOURCE_DIR}/fleetsim_main.c)
target_link_libraries(fleetsim PRIVATE ks-fleetsim)
add_executable(bench_place ${CMAKE_CURRENT_SOURCE_DIR}/bench_place.c)
target_link_libraries(bench_place PRIVATE ks-fleetsim ks-api)
add_executable(bench_reclaim ${CMAKE_CURRENT_SOURCE_DIR}/bench_reclaim.c)
target_link_libraries(bench_reclaim PRIVATE ks-fleetsim)
add_executable(bench_api ${CMAKE_CURRENT_SOURCE_DIR}/bench_api.c)
target_link_libraries(bench_api PRIVATE ks-fleetsim)
if(TARGET kintsugid)
    add_dependencies(bench_api kintsugid)
    target_compile_definitions(bench_api PRIVATE KS_BENCH_KINTSUGID="$<TARGET_FILE:kintsugid>")
endif()

if(KS_BUILD_TESTS)
    # Each benchmark once at tiny scale: proves it still runs, asserts no timing.
    set(_ks_bench_env "KS_FIXTURES_DIR=${KS_FIXTURES_DIR}")
    add_test(NAME bench_fleetsim
             COMMAND fleetsim --hosts 50 --seed 1 --defect-rate 0.2 --trace-steps 200
                     --db ${CMAKE_CURRENT_BINARY_DIR}/bench_fleetsim_test.db)
    add_test(NAME bench_place COMMAND bench_place --hosts 50 --ops 300 --scaling 20,50)
    add_test(NAME bench_reclaim COMMAND bench_reclaim --hosts 50 --defect-rate 0.3
                                        --trace-steps 300)
    add_test(NAME bench_api COMMAND bench_api --hosts 30 --requests 300 --clients 32)
    set_tests_properties(bench_fleetsim bench_place bench_reclaim bench_api PROPERTIES
                         LABELS "bench" TIMEOUT 120 ENVIRONMENT "${_ks_bench_env}")
endif()

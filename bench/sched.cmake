# place_bench: in-process placement benchmark of libks-sched (prints figures;
# not a test).  Run a Release build: build-*/bench/place_bench --hosts 1000,10000
add_executable(place_bench ${CMAKE_CURRENT_SOURCE_DIR}/place_bench.c)
target_link_libraries(place_bench PRIVATE ks-sched ks-common)

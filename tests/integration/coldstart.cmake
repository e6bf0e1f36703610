# kintsugid's start-up rebuild (api/ks_api.c) against the full-JSON rebuild, on
# a simulated fleet (needs the fleet simulator library from bench/).
if(KS_BUILD_BENCH)
    ks_add_integration_test(test_api_coldstart
                            SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_api_coldstart.c
                            LIBS ks-api ks-fleetsim ks-common LABELS api TIMEOUT 300)
endif()

# VMM drivers and the agent REST endpoint (issue 7).  The tests link the vmm sources
# directly (not libks-agent) so that other agent modules being written at the same
# time cannot break them.
if(NOT TARGET ks-vmm-lib)
    file(GLOB KS_VMM_LIB_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/agent/vmm/*.c)
    add_library(ks-vmm-lib STATIC ${KS_VMM_LIB_SOURCES} ${CMAKE_SOURCE_DIR}/agent/ks_agent_server.c)
    target_include_directories(ks-vmm-lib PUBLIC ${CMAKE_SOURCE_DIR}/agent
                               ${CMAKE_SOURCE_DIR}/agent/vmm)
    target_link_libraries(ks-vmm-lib PUBLIC ks-common PkgConfig::CURL PkgConfig::MHD
                          Threads::Threads)
endif()

ks_add_unit_test(test_ks_vmm SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_vmm.c
                 LIBS ks-vmm-lib LABELS vmm TIMEOUT 60)
ks_add_unit_test(test_ks_vmm_rest SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_vmm_rest.c
                 LIBS ks-vmm-lib LABELS vmm TIMEOUT 60)
ks_add_unit_test(test_ks_vmm_server SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_vmm_server.c
                 LIBS ks-vmm-lib LABELS vmm TIMEOUT 60)

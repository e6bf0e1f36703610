# Real QEMU (TCG) driven through the agent REST endpoint.
if(NOT TARGET ks-vmm-lib)
    file(GLOB KS_VMM_LIB_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/agent/vmm/*.c)
    add_library(ks-vmm-lib STATIC ${KS_VMM_LIB_SOURCES} ${CMAKE_SOURCE_DIR}/agent/ks_agent_server.c)
    target_include_directories(ks-vmm-lib PUBLIC ${CMAKE_SOURCE_DIR}/agent
                               ${CMAKE_SOURCE_DIR}/agent/vmm)
    target_link_libraries(ks-vmm-lib PUBLIC ks-common PkgConfig::CURL PkgConfig::MHD
                          Threads::Threads)
endif()

ks_add_integration_test(test_qemu_vmm SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_qemu_vmm.c
                        LIBS ks-vmm-lib LABELS vmm TIMEOUT 120)

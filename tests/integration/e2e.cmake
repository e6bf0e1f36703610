# Issue 7 end to end: kintsugid + kintsugi-agent run + real QEMU (TCG) on the
# two CPUs of this machine, reported as mini hybrid fixtures derived at test
# time from a recorded Raptor Lake CPUID dump.  Needs qemu-system-x86_64.
if(NOT TARGET ks-vmm-lib)
    # Same library as tests/integration/vmm.cmake (whichever fragment comes first
    # defines it): the test speaks QMP through agent/vmm/ks_qmp.c.
    file(GLOB KS_VMM_LIB_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/agent/vmm/*.c)
    add_library(ks-vmm-lib STATIC ${KS_VMM_LIB_SOURCES} ${CMAKE_SOURCE_DIR}/agent/ks_agent_server.c)
    target_include_directories(ks-vmm-lib PUBLIC ${CMAKE_SOURCE_DIR}/agent
                               ${CMAKE_SOURCE_DIR}/agent/vmm)
    target_link_libraries(ks-vmm-lib PUBLIC ks-common PkgConfig::CURL PkgConfig::MHD
                          Threads::Threads)
endif()
ks_add_integration_test(test_e2e_qemu SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_e2e_qemu.c
                        LIBS ks-vmm-lib ks-common DEPENDS kintsugid kintsugi-agent
                        LABELS e2e TIMEOUT 60)

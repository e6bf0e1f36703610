# The VM request / plan text decoders used when a store is reloaded
# (common/ks_vm_fast.c), against the plain JSON decoders.
ks_add_unit_test(test_ks_vm_fast SOURCES ${CMAKE_SOURCE_DIR}/tests/unit/test_ks_vm_fast.c
                 LIBS ks-common LABELS codec)

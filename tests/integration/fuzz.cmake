# Fuzz harnesses in replay mode (docs/reliability.md#fuzzing): each harness of
# tests/fuzz/ is linked with ks_fuzz_replay.c instead of libFuzzer, so the normal
# ASan+UBSan build of scripts/test.sh runs it on the seed corpus plus a fixed
# set of deterministic mutations (ctest label "fuzz").  The coverage-guided
# libFuzzer runs are scripts/fuzz.sh (a clang build with -DKS_FUZZ=ON).
set(KS_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)
set(KS_FUZZ_CORPUS ${CMAKE_BINARY_DIR}/fuzz-corpus)
# Mutations per harness and a wall-clock cap (seconds) so the suite stays bounded.
set(KS_FUZZ_REPLAY_MUTATIONS 4000 CACHE STRING "Mutations per fuzz harness in replay mode")
set(KS_FUZZ_REPLAY_SECONDS 25 CACHE STRING "Time cap per fuzz harness in replay mode")

# Seed corpora: committed seeds, the docs' examples, agent reports of fixtures.
set(_ks_fuzz_agent "")
if(TARGET kintsugi-agent)
    set(_ks_fuzz_agent $<TARGET_FILE:kintsugi-agent>)
endif()
add_test(NAME fuzz_seeds
         COMMAND bash ${KS_FUZZ_DIR}/gen_seeds.sh ${KS_FUZZ_CORPUS} ${_ks_fuzz_agent})
set_tests_properties(fuzz_seeds PROPERTIES LABELS "fuzz" TIMEOUT 120
                     FIXTURES_SETUP ks_fuzz_corpus ENVIRONMENT "${KS_TEST_ENV}")

# Known findings in code outside tests/fuzz/ (docs/reliability.md#known-findings):
# the mutation runs tolerate these so they can keep looking for other bugs,
# while fuzz_crashes_<h> replays each reproducer strictly and fails until the
# bug is fixed.  Remove an id here once its fix is in.
set(KS_FUZZ_KNOWN_FINDINGS "")
string(REPLACE ";" "," _ks_fuzz_allow "${KS_FUZZ_KNOWN_FINDINGS}")

foreach(_h report vm_request plan feature api)
    set(_libs ks-common)
    if(_h STREQUAL "api")
        set(_libs ks-api)
    endif()
    if(NOT TARGET ${_libs})
        continue()
    endif()
    set(_n ${KS_FUZZ_REPLAY_MUTATIONS})
    if(_h STREQUAL "api")
        math(EXPR _n "${_n} / 4") # each input builds a fresh API and store
    elseif(_h STREQUAL "vm_request" OR _h STREQUAL "plan")
        math(EXPR _n "${_n} * 5") # small documents: ~10k inputs/s under ASan
    endif()
    add_executable(fuzz_replay_${_h} ${KS_FUZZ_DIR}/fuzz_${_h}.c ${KS_FUZZ_DIR}/ks_fuzz_replay.c)
    target_include_directories(fuzz_replay_${_h} PRIVATE ${KS_FUZZ_DIR})
    target_link_libraries(fuzz_replay_${_h} PRIVATE ${_libs})
    add_test(NAME fuzz_replay_${_h}
             COMMAND fuzz_replay_${_h} -n ${_n} -t ${KS_FUZZ_REPLAY_SECONDS}
                     -d ${KS_FUZZ_DIR}/dict/${_h}.dict -o ${CMAKE_BINARY_DIR}/fuzz-crash-${_h}
                     ${KS_FUZZ_CORPUS}/${_h})
    set_tests_properties(fuzz_replay_${_h} PROPERTIES LABELS "fuzz" TIMEOUT 120
                         FIXTURES_REQUIRED ks_fuzz_corpus
                         ENVIRONMENT "${KS_TEST_ENV};KS_FUZZ_ALLOW=${_ks_fuzz_allow}")
    file(GLOB _crashes CONFIGURE_DEPENDS ${KS_FUZZ_DIR}/seeds/${_h}/crash-*)
    if(_crashes)
        add_test(NAME fuzz_crashes_${_h}
                 COMMAND fuzz_replay_${_h} -n 0 -o ${CMAKE_BINARY_DIR}/fuzz-crash-known-${_h}
                         ${_crashes})
        set_tests_properties(fuzz_crashes_${_h} PROPERTIES LABELS "fuzz" TIMEOUT 60
                             ENVIRONMENT "${KS_TEST_ENV}")
    endif()
endforeach()

# Optional: the real libFuzzer runs through scripts/fuzz.sh in a nested clang
# build (<build>/build-fuzz), SECONDS per harness.  Off by default: the nested
# build costs a clean clang build of the libraries on the shared cores before
# any input runs (docs/reliability.md#fuzzing); CI enables it with
# -DKS_FUZZ_LIBFUZZER_SECONDS=10.
set(KS_FUZZ_LIBFUZZER_SECONDS 0 CACHE STRING
    "Seconds per harness for the fuzz_libfuzzer test (0 = not registered)")
find_program(KS_CLANG clang)
if(KS_CLANG AND KS_FUZZ_LIBFUZZER_SECONDS GREATER 0)
    add_test(NAME fuzz_libfuzzer
             COMMAND ${CMAKE_COMMAND} -E env KS_FUZZ_BUILD_DIR=${CMAKE_BINARY_DIR}/build-fuzz
                     bash ${CMAKE_SOURCE_DIR}/scripts/fuzz.sh ${KS_FUZZ_LIBFUZZER_SECONDS})
    set_tests_properties(fuzz_libfuzzer PROPERTIES LABELS "fuzz;libfuzzer" TIMEOUT 900
                         RUN_SERIAL TRUE)
endif()

# The REST API (api/): a real kintsugid driven over HTTP with libcurl.
ks_add_integration_test(test_api SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_api.c
                        LIBS ks-api ks-common DEPENDS kintsugid LABELS api TIMEOUT 600)
ks_add_integration_test(test_api_daemon
                        SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_api_daemon.c
                        LIBS ks-api ks-common DEPENDS kintsugid LABELS api TIMEOUT 300)

# The OpenAPI document must pass an offline validator.  swagger-cli is installed
# from npm into a cache under the build tree on first use; without npm this test
# FAILS (it is not skipped): the document is API and must stay valid.
set(KS_NPM_CACHE ${CMAKE_BINARY_DIR}/npm-tools)
add_test(NAME test_api_openapi_valid
         COMMAND sh -c "set -e
command -v npm >/dev/null || { echo 'npm is required to validate api/openapi.json' >&2; exit 1; }
tools='${KS_NPM_CACHE}'
if [ ! -x \"$tools/node_modules/.bin/swagger-cli\" ]; then
  mkdir -p \"$tools\"
  npm install --prefix \"$tools\" --no-audit --no-fund --loglevel=error @apidevtools/swagger-cli@4.0.4 >&2
fi
\"$tools/node_modules/.bin/swagger-cli\" validate '${CMAKE_SOURCE_DIR}/api/openapi.json'")
set_tests_properties(test_api_openapi_valid PROPERTIES LABELS "integration;api" TIMEOUT 600)

# Group commit of creates and deletes, in process over a file store (needs the
# fleet simulator library from bench/ for its hosts).
if(KS_BUILD_BENCH)
    ks_add_integration_test(test_api_group
                            SOURCES ${CMAKE_SOURCE_DIR}/tests/integration/test_api_group.c
                            LIBS ks-api ks-fleetsim ks-common LABELS api TIMEOUT 300)
endif()

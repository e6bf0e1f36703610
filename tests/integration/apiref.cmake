# docs/api-reference.md is generated from api/openapi.json by
# scripts/gen-api-reference.py and committed.  This test regenerates it into the
# build tree and fails on any difference (so the reference cannot drift from the
# document), checks that every path and method of the document has a section,
# and that the generator refuses a document that is not OpenAPI with a clear
# error.  Fix a failure with: python3 scripts/gen-api-reference.py
add_test(NAME test_api_reference_current
         COMMAND sh -c "set -e
command -v python3 >/dev/null || { echo 'python3 is required to check docs/api-reference.md' >&2; exit 1; }
gen='${CMAKE_SOURCE_DIR}/scripts/gen-api-reference.py'
out='${CMAKE_BINARY_DIR}/api-reference.md'
python3 \"$gen\" --openapi '${CMAKE_SOURCE_DIR}/api/openapi.json' --out \"$out\"
if ! diff -u '${CMAKE_SOURCE_DIR}/docs/api-reference.md' \"$out\"; then
  echo 'docs/api-reference.md is stale: run python3 scripts/gen-api-reference.py' >&2
  exit 1
fi
python3 - '${CMAKE_SOURCE_DIR}/api/openapi.json' \"$out\" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read()
methods = ('get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace')
missing = ['%s %s' % (m.upper(), p) for p, item in doc['paths'].items() for m in item
           if m in methods and '\\n### %s %s\\n' % (m.upper(), p) not in text]
if missing:
    sys.exit('api-reference.md lacks sections for: ' + ', '.join(missing))
print('%d operations documented' % sum(1 for i in doc['paths'].values() for m in i if m in methods))
PY
bad='${CMAKE_BINARY_DIR}/api-reference-bad.json'
echo '{\"openapi\": \"3.0.3\"}' >\"$bad\"
if python3 \"$gen\" --openapi \"$bad\" --out - >/dev/null 2>\"$bad.err\"; then
  echo 'the generator accepted a document without paths' >&2; exit 1
fi
grep -q 'not an OpenAPI document' \"$bad.err\"")
set_tests_properties(test_api_reference_current PROPERTIES LABELS "docs" TIMEOUT 60)

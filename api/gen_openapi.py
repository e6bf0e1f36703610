import json
# Generates api/openapi.json (python3 api/gen_openapi.py > api/openapi.json).
# The JSON is committed and embedded in libks-api; keep both in step.
def ref(n): return {"$ref": "#/components/schemas/" + n}
def rresp(n): return {"$ref": "#/components/responses/" + n}
def pref(n): return {"$ref": "#/components/parameters/" + n}
def jbody(schema, desc=None):
    d = {"content": {"application/json": {"schema": schema}}}
    d["description"] = desc or "JSON document"
    return d
S = lambda **kw: dict(type="string", **kw)
I = lambda **kw: dict(type="integer", format="int64", **kw)
B = lambda **kw: dict(type="boolean", **kw)
A = lambda items, **kw: dict(type="array", items=items, **kw)
O = lambda props, req=None, **kw: dict(type="object", properties=props, **({"required": req} if req else {}), **kw)
nullable = lambda s: dict(s, nullable=True)
feats = A(S(), description="canonical feature names (catalogue)")
etag_h = {"ETag": {"description": "strong entity tag of the representation", "schema": S()}}
std_auth = ["Unauthorized", "Forbidden", "RateLimited", "Internal"]

def op(opid, summary, ok, errors, params=None, body=None, security=True, tags=None, desc=None):
    o = {"operationId": opid, "summary": summary, "responses": {}}
    if desc: o["description"] = desc
    if tags: o["tags"] = tags
    if params: o["parameters"] = params
    if body: o["requestBody"] = dict(body, required=True)
    o["responses"].update(ok)
    for e in errors:
        code = {"BadRequest": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404",
                "MethodNotAllowed": "405", "Conflict": "409", "PreconditionFailed": "412",
                "TooLarge": "413", "UnsupportedMediaType": "415", "IdempotencyMismatch": "422",
                "RateLimited": "429", "Internal": "500", "Unavailable": "503"}[e]
        o["responses"][code] = rresp(e)
    if not security: o["security"] = []
    return o

def ok(code, schema, desc, headers=None):
    d = {"description": desc}
    if schema is not None: d["content"] = {"application/json": {"schema": schema}}
    if headers: d["headers"] = headers
    return {str(code): d}

paths = {}
paths["/healthz"] = {"get": op("getHealth", "Liveness: the process serves HTTP", ok(200, ref("Health"), "alive"), ["Internal"], security=False, tags=["health"])}
paths["/readyz"] = {"get": op("getReady", "Readiness: database open and fleet index loaded", ok(200, ref("Ready"), "ready"), ["Unavailable", "Internal"], security=False, tags=["health"])}
paths["/metrics"] = {"get": op("getMetrics", "Prometheus metrics (text exposition format 0.0.4)",
    {"200": {"description": "metrics", "content": {"text/plain": {"schema": S()}}}}, std_auth, tags=["health"])}
paths["/v1/openapi.json"] = {"get": op("getOpenapi", "This document (also served at /openapi.json)", ok(200, {"type": "object"}, "OpenAPI 3.0 document"), ["Internal"], security=False, tags=["health"])}

paths["/v1/hosts/{id}/report"] = {"put": op("putHostReport", "Store a host report (agent -> scheduler)",
    {**ok(200, ref("ReportResult"), "accepted (or unchanged: same boot id and generation)"), **ok(201, ref("ReportResult"), "first report of this host")},
    ["BadRequest", "Unauthorized", "Forbidden", "Conflict", "TooLarge", "UnsupportedMediaType", "RateLimited", "Internal"],
    params=[pref("HostId")], body=jbody(ref("HostReport"), "the host report, schema 1 (docs/report-schema.md)"), tags=["hosts"],
    desc="Idempotent by (host, boot_id, generation). An older generation of the same boot is 409. "
         "VMs whose vCPUs sit on CPUs that lost a feature they see are re-planned (new plan generation) or marked needs_migration. "
         "Admin, or the agent token bound to this host.")}
paths["/v1/hosts/{id}/heartbeat"] = {"post": op("postHostHeartbeat", "Heartbeat between reports",
    ok(200, ref("HeartbeatResult"), "recorded"),
    ["BadRequest", "Unauthorized", "Forbidden", "NotFound", "UnsupportedMediaType", "RateLimited", "Internal"],
    params=[pref("HostId")], tags=["hosts"],
    desc="Optional JSON body {boot_id, generation}: report_required is true when the server holds another boot or an older generation. A lost host becomes ready.")}
paths["/v1/hosts/{id}/heartbeat"]["post"]["requestBody"] = dict(jbody(ref("Heartbeat")), required=False)
paths["/v1/hosts"] = {"get": op("listHosts", "List hosts (keyset pagination by id)",
    ok(200, ref("HostList"), "a page of hosts"), ["BadRequest", *std_auth],
    params=[pref("Limit"), pref("Cursor"),
            {"name": "state", "in": "query", "schema": S(enum=["ready", "draining", "lost"])},
            {"name": "kind", "in": "query", "schema": S(enum=["performance", "efficiency", "hybrid"]), "description": "hosts having CPUs of this kind (hybrid: both)"},
            {"name": "feature", "in": "query", "schema": S(), "description": "hosts with this feature usable on at least one CPU"},
            {"name": "vendor", "in": "query", "schema": S()},
            {"name": "arch", "in": "query", "schema": S(enum=["x86_64", "aarch64"])}], tags=["hosts"])}
paths["/v1/hosts/{id}"] = {
    "get": op("getHost", "One host: summary and counts", ok(200, ref("Host"), "the host", {**etag_h}),
              ["BadRequest", "NotFound", *std_auth], params=[pref("HostId"), pref("IfNoneMatch")], tags=["hosts"]),
    "delete": op("deleteHost", "Forget a host (refused while VMs live on it)", {"204": {"description": "deleted"}},
                 ["BadRequest", "NotFound", "Conflict", "PreconditionFailed", *std_auth], params=[pref("HostId"), pref("IfMatch")], tags=["hosts"])}
paths["/v1/hosts/{id}/cpus"] = {"get": op("listHostCpus", "The host's logical CPUs as the index holds them",
    ok(200, ref("CpuList"), "CPUs by OS id"), ["BadRequest", "NotFound", *std_auth],
    params=[pref("HostId"), {"name": "state", "in": "query", "schema": S(enum=["online", "degraded", "offline", "quarantined"])}], tags=["hosts"])}
paths["/v1/hosts/{id}/drain"] = {"post": op("drainHost", "Stop placing VMs on the host (its VMs stay)",
    ok(200, ref("Host"), "the host, now draining", {**etag_h}), ["BadRequest", "NotFound", "PreconditionFailed", *std_auth],
    params=[pref("HostId"), pref("IfMatch")], tags=["hosts"])}

paths["/v1/vms"] = {
    "post": op("createVm", "Place a VM: choose CPUs, store the plan", {**ok(201, ref("Vm"), "placed", {**etag_h, "Location": {"schema": S(), "description": "/v1/vms/{name}"}})},
               ["BadRequest", "NotFound", "Conflict", "TooLarge", "UnsupportedMediaType", "IdempotencyMismatch", *std_auth],
               params=[pref("IdempotencyKey")], body=jbody(ref("VmRequest")), tags=["vms"],
               desc="409 no_capacity carries error.details = {hosts_considered, reasons: {reason: host count}}. "
                    "With Idempotency-Key, the same key and body replay the stored 201; another body is 422."),
    "get": op("listVms", "List VMs (keyset pagination by name)", ok(200, ref("VmList"), "a page of VMs"), ["BadRequest", *std_auth],
              params=[pref("Limit"), pref("Cursor"), {"name": "host", "in": "query", "schema": S()},
                      {"name": "state", "in": "query", "schema": S(enum=["running", "needs_migration", "failed"])},
                      {"name": "pool", "in": "query", "schema": S()}], tags=["vms"])}
paths["/v1/vms/{name}"] = {
    "get": op("getVm", "One VM with its plan", ok(200, ref("Vm"), "the VM", {**etag_h}), ["BadRequest", "NotFound", *std_auth],
              params=[pref("VmName"), pref("IfNoneMatch")], tags=["vms"]),
    "delete": op("deleteVm", "Delete a VM and free its CPUs", {"204": {"description": "deleted"}},
                 ["BadRequest", "NotFound", "PreconditionFailed", *std_auth], params=[pref("VmName"), pref("IfMatch")], tags=["vms"])}

paths["/v1/pools"] = {
    "post": op("createPool", "Create a pool from host ids and/or a selector", ok(201, ref("PoolCreated"), "created"),
               ["BadRequest", "NotFound", "Conflict", "TooLarge", "UnsupportedMediaType", *std_auth], body=jbody(ref("PoolCreate")), tags=["pools"]),
    "get": op("listPools", "List pools", ok(200, ref("PoolList"), "all pools"), std_auth, tags=["pools"])}
paths["/v1/pools/{pool}"] = {
    "get": op("getPool", "A pool: baseline and the members narrowing it most", ok(200, ref("PoolDetail"), "the pool", {**etag_h}),
              ["BadRequest", "NotFound", *std_auth], params=[pref("PoolName")], tags=["pools"]),
    "delete": op("deletePool", "Delete a pool (refused while VMs use it)", {"204": {"description": "deleted"}},
                 ["BadRequest", "NotFound", "Conflict", *std_auth], params=[pref("PoolName")], tags=["pools"])}
paths["/v1/policies/feature-bans"] = {
    "post": op("createFeatureBan", "Ban features fleet-wide; affected VMs are re-planned", ok(201, ref("BanCreated"), "created"),
               ["BadRequest", "TooLarge", "UnsupportedMediaType", *std_auth], body=jbody(ref("BanCreate")), tags=["policies"]),
    "get": op("listFeatureBans", "List feature bans", ok(200, ref("BanList"), "all bans"), std_auth, tags=["policies"])}
paths["/v1/policies/feature-bans/{ban}"] = {"delete": op("deleteFeatureBan", "Lift a ban (VMs keep their plans until re-planned)",
    {"204": {"description": "deleted"}}, ["BadRequest", "NotFound", *std_auth], params=[pref("BanId")], tags=["policies"])}
paths["/v1/capacity"] = {"get": op("getCapacity", "Capacity in logical CPUs", ok(200, ref("CapacityList"), "one item per scope"),
    ["BadRequest", *std_auth], params=[{"name": "by", "in": "query", "schema": S(enum=["fleet", "pool", "host", "kind"], default="fleet")}], tags=["capacity"])}
paths["/v1/capacity/history"] = {"get": op("getCapacityHistory", "Stored capacity snapshots of one scope (oldest first)",
    ok(200, ref("CapacityHistory"), "snapshots"), ["BadRequest", *std_auth],
    params=[{"name": "scope", "in": "query", "schema": S(default="fleet"), "description": "fleet, pool:<name> or host:<id>"},
            {"name": "since_us", "in": "query", "schema": I(minimum=0, default=0)},
            {"name": "limit", "in": "query", "schema": I(minimum=1, maximum=10000, default=100)}],
    tags=["capacity"], desc="Snapshots are taken every --snapshot-interval seconds.")}
paths["/v1/reports/capacity"] = {"get": op("getCapacityReport", "Everything the capacity report needs, in one document",
    ok(200, ref("CapacityReport"), "the report"), ["BadRequest", *std_auth],
    params=[{"name": "history", "in": "query", "schema": I(minimum=0, maximum=10000, default=200), "description": "latest fleet snapshots to include"}],
    tags=["capacity"], desc="Used by `kintsugictl report` (HTML/CSV/JSON).")}
paths["/v1/events"] = {"get": op("listEvents", "Events after an id (ascending)", ok(200, ref("EventList"), "events"),
    ["BadRequest", *std_auth], params=[{"name": "since", "in": "query", "schema": I(minimum=0, default=0)}, pref("Limit")], tags=["events"])}

ErrorSchema = O({"error": O({
    "code": S(description="stable slug", enum=["invalid_argument", "unauthenticated", "forbidden", "not_found", "method_not_allowed", "already_exists",
        "conflict", "no_capacity", "precondition_failed", "too_large", "unsupported_media_type", "idempotency_mismatch", "rate_limited",
        "internal", "unavailable", "unsupported", "io_error", "out_of_memory"]),
    "message": S(), "field": S(description="JSON path or parameter the error is about"),
    "request_id": S(), "details": {"type": "object", "additionalProperties": True}}, ["code", "message", "request_id"])}, ["error"])
def eresp(desc): return {"description": desc, "content": {"application/json": {"schema": ref("Error")}}}
responses = {
    "BadRequest": eresp("invalid_argument: malformed JSON, wrong type, unknown field (error.field has the JSON path)"),
    "Unauthorized": eresp("unauthenticated: missing or unknown bearer token"),
    "Forbidden": eresp("forbidden: the token's role may not do this"),
    "NotFound": eresp("not_found"),
    "MethodNotAllowed": eresp("method_not_allowed (Allow header lists the methods)"),
    "Conflict": eresp("already_exists, conflict (stale generation, object in use) or no_capacity"),
    "PreconditionFailed": eresp("precondition_failed: If-Match does not match the current ETag"),
    "TooLarge": eresp("too_large: request body above the server limit"),
    "UnsupportedMediaType": eresp("unsupported_media_type: Content-Type must be application/json"),
    "IdempotencyMismatch": eresp("idempotency_mismatch: the Idempotency-Key was used with another request"),
    "RateLimited": {**eresp("rate_limited (Retry-After header)"), "headers": {"Retry-After": {"schema": I()}}},
    "Internal": eresp("internal: the message is generic; the server log has the details under request_id"),
    "Unavailable": eresp("unavailable"),
}
params = {
    "HostId": {"name": "id", "in": "path", "required": True, "schema": S(pattern="^[A-Za-z0-9._-]{1,63}$")},
    "VmName": {"name": "name", "in": "path", "required": True, "schema": S(pattern="^[A-Za-z0-9._-]{1,63}$")},
    "PoolName": {"name": "pool", "in": "path", "required": True, "schema": S(pattern="^[A-Za-z0-9._-]{1,63}$")},
    "BanId": {"name": "ban", "in": "path", "required": True, "schema": I(minimum=1)},
    "Limit": {"name": "limit", "in": "query", "schema": I(minimum=1, maximum=1000, default=100)},
    "Cursor": {"name": "cursor", "in": "query", "schema": S(), "description": "opaque next_cursor of the previous page"},
    "IfMatch": {"name": "If-Match", "in": "header", "schema": S(), "description": "ETag the change is conditional on (412 otherwise)"},
    "IfNoneMatch": {"name": "If-None-Match", "in": "header", "schema": S(), "description": "304 when it matches the current ETag"},
    "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "schema": S(maxLength=128)},
}
counts = O({"cpus_by_state": {"type": "object", "additionalProperties": I()}, "cpus_by_kind": {"type": "object", "additionalProperties": I()},
            "reserved": I(), "allocated": I(), "free": I(), "vms": I()})
schemas = {
    "Error": ErrorSchema,
    "Health": O({"status": S(), "version": S()}, ["status"]),
    "Ready": O({"status": S(), "store": S(), "hosts": I(), "vms": I()}, ["status"]),
    "HostReport": O({"schema": I(enum=[1]), "host": O({"id": S(), "boot_id": S(), "generation": I()}, additionalProperties=True),
                     "cpus": A({"type": "object", "additionalProperties": True})}, ["schema", "host", "cpus"], additionalProperties=True,
                    description="docs/report-schema.md; unknown keys are rejected by the server"),
    "ReportResult": O({"host": S(), "generation": I(), "boot_id": S(), "created": B(), "unchanged": B(), "boot_changed": B(),
                       "affected": A(O({"vm": S(), "host_cpu": I(), "vcpu": I(), "reason": S()})),
                       "replans": A(ref("ReplanResult")), "replans_complete": B(),
                       "unknown_vms": A(S(), description="running VMs the report lists that kintsugid did not place on this host"),
                       "missing_vms": A(S(), description="VMs whose plan this agent had applied but which its report no longer lists: their plans are pushed again")},
                      ["host", "generation", "created", "unchanged"]),
    "ReplanResult": O({"vm": S(), "result": S(enum=["replanned", "needs_migration"]), "generation": I(), "host": S(), "detail": S()}, ["vm", "result"]),
    "Heartbeat": O({"boot_id": S(), "generation": I(minimum=0)}, additionalProperties=False),
    "HeartbeatResult": O({"host": S(), "state": S(enum=["ready", "draining", "lost"]), "report_required": B()}, ["host", "state", "report_required"]),
    "Host": O({"id": S(), "hostname": S(), "arch": nullable(S()), "vendor": S(), "model_name": S(),
               "state": S(enum=["ready", "draining", "lost"]), "boot_id": S(), "generation": I(),
               "registered_us": I(), "updated_us": I(), "last_heartbeat_us": I(), "n_cpus": I(),
               "schedulable": B(), "indexed": B(), "counts": counts,
               "agent_url": nullable(S(description="where kintsugid pushes plans (GET /v1/hosts/{id} only)"))},
              ["id", "state", "generation", "n_cpus"]),
    "HostList": O({"items": A(ref("Host")), "next_cursor": nullable(S())}, ["items", "next_cursor"]),
    "Cpu": O({"id": I(), "package": I(), "core": I(), "thread": I(), "numa_node": I(), "l2_group": I(), "l3_group": I(),
              "kind": S(enum=["performance", "efficiency"]), "kind_name": S(), "max_mhz": I(),
              "state": S(enum=["online", "degraded", "offline", "quarantined"]), "reserved": B(),
              "n_native": I(), "n_usable": I(), "unusable": feats, "vm": nullable(S()),
              "defects": A(O({"feature": nullable(S(description="null: whole-CPU defect")),
                              "source": S(enum=["selftest", "ifs", "operator", "mce"]), "time_us": I(), "detail": S()}))}, ["id", "state"]),
    "CpuList": O({"host": S(), "items": A(ref("Cpu"))}, ["host", "items"]),
    "VmRequest": O({
        "name": S(pattern="^[A-Za-z0-9._-]{1,63}$"),
        "vcpus": {"oneOf": [I(minimum=1), O({"performance": I(minimum=0), "efficiency": I(minimum=0), "any": I(minimum=0)}, additionalProperties=False)]},
        "memory_mib": I(minimum=1), "required_features": feats, "forbidden_features": feats,
        "pool": S(), "host": S(), "anti_affinity_group": S(), "min_mhz": I(minimum=0),
        "placement": S(enum=["pack", "spread"]), "numa": S(enum=["preferred", "strict"]), "smt": S(enum=["allow", "isolate"]),
        "pmu": O({"enabled": B(), "allow_events": A(S()), "deny_events": A(S())}, additionalProperties=False)},
        ["name", "vcpus"], additionalProperties=False),
    "Plan": O({"vm": S(), "host": S(), "generation": I(), "memory_mib": I(),
               "topology": O({"sockets": I(), "dies": I(), "clusters": I(), "cores": I(), "threads": I()}),
               "vcpus": A(O({"id": I(), "host_cpu": I(), "kind": S(), "max_mhz": I(), "cluster": I(), "l2_group": I(), "l3_group": I()}, additionalProperties=True)),
               "features": O({"model": S(), "enable": feats, "disable": feats}),
               "pmu": {"type": "object", "additionalProperties": True}, "numa": A({"type": "object", "additionalProperties": True})},
              additionalProperties=True, description="the vCPU plan sent to the host's agent (docs/report-schema.md)"),
    "Vm": O({"name": S(), "host": S(), "state": S(enum=["running", "needs_migration", "failed"]), "generation": I(),
             "applied_generation": I(), "pool": nullable(S()), "anti_affinity_group": nullable(S()), "apply_error": nullable(S()),
             "vcpus": I(), "created_us": I(), "updated_us": I(), "request": ref("VmRequest"), "plan": ref("Plan")},
            ["name", "host", "state", "generation", "plan"]),
    "VmList": O({"items": A(ref("Vm")), "next_cursor": nullable(S())}, ["items", "next_cursor"]),
    "PoolCreate": O({"name": S(pattern="^[A-Za-z0-9._-]{1,63}$"), "hosts": A(S()),
                     "selector": O({"vendor": S(), "model": S(description="substring of the model name"), "required_features": feats}, additionalProperties=False)},
                    ["name"], additionalProperties=False, description="hosts and/or selector (evaluated once, at creation)"),
    "PoolCreated": O({"name": S(), "members": A(S())}, ["name", "members"]),
    "Pool": O({"name": S(), "members": A(S()), "selector": nullable({"type": "object"}), "created_us": I()}, ["name", "members"]),
    "PoolList": O({"items": A(ref("Pool")), "next_cursor": nullable(S())}, ["items"]),
    "PoolDetail": O({"name": S(), "members": A(S()), "selector": nullable({"type": "object"}), "baseline": feats,
                     "baseline_size": I(), "baseline_cpus": I(), "created_us": I(),
                     "narrowing": A(O({"host": S(), "n_gained": I(), "gained": feats}))}, ["name", "baseline", "narrowing"]),
    "BanCreate": O({"features": dict(feats, minItems=1), "reason": S(maxLength=255)}, ["features"], additionalProperties=False),
    "Ban": O({"id": I(), "features": feats, "reason": S(), "created_us": I()}, ["id", "features"]),
    "BanCreated": O({"id": I(), "features": feats, "reason": S(), "created_us": I(), "n_affected": I(), "affected": A(ref("ReplanResult"))},
                    ["id", "features", "affected"]),
    "BanList": O({"items": A(ref("Ban")), "banned": feats, "next_cursor": nullable(S())}, ["items", "banned"]),
    "Capacity": O({k: I() for k in ["total", "allocated", "free", "unschedulable", "reserved", "quarantined", "offline",
                                    "degraded_usable", "reclaimed", "stranded"]} | {"scope": S()}, ["scope", "total"]),
    "CapacityList": O({"by": S(enum=["fleet", "pool", "host", "kind"]), "items": A(ref("Capacity"))}, ["by", "items"]),
    "CapacitySnapshot": O({k: I() for k in ["id", "time_us", "total", "allocated", "free", "degraded_usable", "reclaimed",
                                            "stranded", "quarantined"]} | {"scope": S()}, ["id", "time_us", "scope", "total"]),
    "CapacityHistory": O({"scope": S(), "items": A(ref("CapacitySnapshot"))}, ["scope", "items"]),
    "CapacityReport": O({"generated_us": I(), "fleet": ref("Capacity"), "pools": A(ref("Capacity")), "kinds": A(ref("Capacity")),
                         "hosts": A(ref("Capacity")),
                         "defects": A(O({"feature": S(), "cpus": I(), "hosts": I(), "by_host": {"type": "object", "additionalProperties": I()}})),
                         "needs_migration": A(O({"name": S(), "host": S(), "reason": S()})),
                         "history": A({"type": "object", "additionalProperties": I()})},
                        ["generated_us", "fleet", "pools", "kinds", "hosts", "defects", "needs_migration", "history"]),
    "Event": O({"id": I(), "time_us": I(), "type": S(), "host": nullable(S()), "vm": nullable(S()), "detail": nullable({"type": "object"})}, ["id", "time_us", "type"]),
    "EventList": O({"items": A(ref("Event")), "next_since": I()}, ["items", "next_since"]),
}
doc = {
    "openapi": "3.0.3",
    "info": {"title": "Kintsugi scheduler API", "version": "1.0.0",
             "description": "REST API of kintsugid: hosts report their CPUs (with per-feature defects), VMs are placed on CPUs by feature set. "
                            "Errors are {\"error\":{code,message,field,request_id,details}}. See docs/api.md.",
             "license": {"name": "see repository"}},
    "servers": [{"url": "http://127.0.0.1:7420"}],
    "security": [{"bearerAuth": []}],
    "tags": [{"name": t} for t in ["health", "hosts", "vms", "pools", "policies", "capacity", "events"]],
    "paths": paths,
    "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "roles: admin (all), reader (GET only), agent (its own host: report, heartbeat, read)"}},
                   "schemas": schemas, "responses": responses, "parameters": params},
}
print(json.dumps(doc, indent=2))

/*
 * ks_store_schema.sql.h - the SQLite schema as numbered migrations.
 *
 * ks_store__migrations[v] brings a database from user_version v to v + 1.
 * Append only: a released migration is never edited (databases in the field
 * have run it), a change is a new migration.  Included by ks_store_sqlite.c only.
 *
 * Choices:
 *  - STRICT tables: a wrong type is an error instead of a silent conversion.
 *  - host_reports keeps the (large) report document apart from hosts, so that
 *    heartbeats and state changes rewrite a small row, not the whole report.
 *  - cpus and vm_vcpus are WITHOUT ROWID clustered on their primary key: the
 *    scheduler's start-up scan of every CPU reads them in key order.
 *  - No CPU is ever allocated twice, whatever the scheduler's memory says:
 *    migration 1 guarded it with vm_vcpus UNIQUE(host_id, cpu_id), migration 3
 *    with a per-host bitmap (see there).  A CPU in use cannot vanish.
 *  - Feature sets are BLOBs of little-endian 64-bit words (ks_featset.w),
 *    trailing zero words trimmed; feature ids are append-only, so old blobs
 *    keep their meaning.
 *  - Enumerations are stored as their names (CHECKed), readable with sqlite3.
 */
#ifndef KS_STORE_SCHEMA_SQL_H
#define KS_STORE_SCHEMA_SQL_H

static const char *const ks_store__migrations[] = {
    /* 0 -> 1: everything */
    "CREATE TABLE hosts (\n"
    "  id TEXT PRIMARY KEY NOT NULL,\n"
    "  hostname TEXT NOT NULL DEFAULT '',\n"
    "  arch TEXT NOT NULL DEFAULT '',\n"
    "  vendor TEXT NOT NULL DEFAULT '',\n"
    "  model_name TEXT NOT NULL DEFAULT '',\n"
    "  state TEXT NOT NULL DEFAULT 'ready' CHECK (state IN ('ready','draining','lost')),\n"
    "  boot_id TEXT NOT NULL DEFAULT '',\n"
    "  generation INTEGER NOT NULL DEFAULT 0,\n"
    "  n_cpus INTEGER NOT NULL DEFAULT 0,\n"
    "  registered_us INTEGER NOT NULL,\n"
    "  updated_us INTEGER NOT NULL,\n"
    "  last_heartbeat_us INTEGER NOT NULL DEFAULT 0\n"
    ") STRICT;\n"
    "CREATE INDEX hosts_state ON hosts(state, id);\n"
    "CREATE TABLE host_reports (\n"
    "  host_id TEXT PRIMARY KEY NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,\n"
    "  report_json TEXT\n"
    ") STRICT;\n"
    "CREATE TABLE cpus (\n"
    "  host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,\n"
    "  cpu_id INTEGER NOT NULL CHECK (cpu_id >= 0),\n"
    "  package INTEGER NOT NULL,\n"
    "  die INTEGER NOT NULL,\n"
    "  cluster INTEGER NOT NULL,\n"
    "  core INTEGER NOT NULL,\n"
    "  thread INTEGER NOT NULL,\n"
    "  numa_node INTEGER NOT NULL,\n"
    "  l2_group INTEGER NOT NULL,\n"
    "  l3_group INTEGER NOT NULL,\n"
    "  kind_class TEXT CHECK (kind_class IN ('performance','efficiency')),\n"
    "  kind_name TEXT NOT NULL DEFAULT '',\n"
    "  base_mhz INTEGER NOT NULL DEFAULT 0,\n"
    "  max_mhz INTEGER NOT NULL DEFAULT 0,\n"
    "  state TEXT NOT NULL CHECK (state IN ('online','degraded','offline','quarantined')),\n"
    "  reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved IN (0,1)),\n"
    "  native BLOB NOT NULL,\n"
    "  usable BLOB NOT NULL,\n"
    "  defective BLOB NOT NULL,\n"
    "  PRIMARY KEY (host_id, cpu_id)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE TABLE cpu_defects (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  host_id TEXT NOT NULL,\n"
    "  cpu_id INTEGER NOT NULL,\n"
    "  feature TEXT,\n"
    "  source TEXT NOT NULL CHECK (source IN ('selftest','ifs','operator','mce')),\n"
    "  time_us INTEGER NOT NULL,\n"
    "  detail TEXT NOT NULL DEFAULT '',\n"
    "  FOREIGN KEY (host_id, cpu_id) REFERENCES cpus(host_id, cpu_id) ON DELETE CASCADE\n"
    ") STRICT;\n"
    "CREATE INDEX cpu_defects_cpu ON cpu_defects(host_id, cpu_id, time_us);\n"
    "CREATE TABLE vms (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  host_id TEXT NOT NULL REFERENCES hosts(id),\n"
    "  state TEXT NOT NULL CHECK (state IN ('running','needs_migration','failed')),\n"
    "  generation INTEGER NOT NULL,\n"
    "  applied_generation INTEGER NOT NULL DEFAULT 0,\n"
    "  pool TEXT NOT NULL DEFAULT '',\n"
    "  anti_affinity_group TEXT NOT NULL DEFAULT '',\n"
    "  apply_error TEXT NOT NULL DEFAULT '',\n"
    "  n_vcpus INTEGER NOT NULL DEFAULT 0,\n"
    "  created_us INTEGER NOT NULL,\n"
    "  updated_us INTEGER NOT NULL,\n"
    "  request_json TEXT,\n"
    "  plan_json TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX vms_host ON vms(host_id, name);\n"
    "CREATE INDEX vms_pool ON vms(pool, name);\n"
    "CREATE TABLE vm_vcpus (\n"
    "  vm_name TEXT NOT NULL REFERENCES vms(name) ON DELETE CASCADE,\n"
    "  vcpu INTEGER NOT NULL CHECK (vcpu >= 0),\n"
    "  host_id TEXT NOT NULL,\n"
    "  cpu_id INTEGER NOT NULL,\n"
    "  PRIMARY KEY (vm_name, vcpu),\n"
    "  UNIQUE (host_id, cpu_id),\n"
    "  FOREIGN KEY (host_id, cpu_id) REFERENCES cpus(host_id, cpu_id)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE TABLE pools (\n"
    "  name TEXT PRIMARY KEY NOT NULL,\n"
    "  selector_json TEXT,\n"
    "  created_us INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE pool_members (\n"
    "  pool TEXT NOT NULL REFERENCES pools(name) ON DELETE CASCADE,\n"
    "  host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,\n"
    "  PRIMARY KEY (pool, host_id)\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE INDEX pool_members_host ON pool_members(host_id);\n"
    "CREATE TABLE policies (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  kind TEXT NOT NULL CHECK (kind IN ('feature_ban')),\n"
    "  features_json TEXT NOT NULL,\n"
    "  reason TEXT NOT NULL DEFAULT '',\n"
    "  created_us INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE events (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  time_us INTEGER NOT NULL,\n"
    "  type TEXT NOT NULL,\n"
    "  host_id TEXT,\n"
    "  vm TEXT,\n"
    "  detail_json TEXT\n"
    ") STRICT;\n"
    "CREATE INDEX events_time ON events(time_us);\n"
    "CREATE TABLE capacity_snapshots (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  time_us INTEGER NOT NULL,\n"
    "  scope TEXT NOT NULL,\n"
    "  total INTEGER NOT NULL,\n"
    "  allocated INTEGER NOT NULL,\n"
    "  free INTEGER NOT NULL,\n"
    "  degraded_usable INTEGER NOT NULL,\n"
    "  reclaimed INTEGER NOT NULL,\n"
    "  stranded INTEGER NOT NULL,\n"
    "  quarantined INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE INDEX capacity_scope_time ON capacity_snapshots(scope, time_us);\n"
    "CREATE INDEX capacity_time ON capacity_snapshots(time_us);\n"
    "CREATE TABLE idempotency_keys (\n"
    "  key TEXT PRIMARY KEY NOT NULL,\n"
    "  request_hash TEXT NOT NULL,\n"
    "  status INTEGER NOT NULL,\n"
    "  response_json TEXT,\n"
    "  created_us INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE INDEX idempotency_created ON idempotency_keys(created_us);\n"
    "CREATE TABLE tokens (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  hash BLOB NOT NULL UNIQUE,\n"
    "  role TEXT NOT NULL,\n"
    "  host_id TEXT NOT NULL DEFAULT '',\n"
    "  description TEXT NOT NULL DEFAULT '',\n"
    "  created_us INTEGER NOT NULL\n"
    ") STRICT;\n",
    /* 1 -> 2: the change feed other kintsugid replicas (and this one) poll to
     * refresh their in-memory index; seq is the cursor (one writer at a time,
     * so seq order is commit order). */
    "CREATE TABLE changes (\n"
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  time_us INTEGER NOT NULL,\n"
    "  kind TEXT NOT NULL CHECK (kind IN ('host','vm','pool','policy')),\n"
    "  key TEXT NOT NULL,\n"
    "  host_id TEXT NOT NULL DEFAULT ''\n"
    ") STRICT;\n"
    "CREATE INDEX changes_time ON changes(time_us);\n",
    /* 2 -> 3: CPU allocations as one bitmap row per host.
     *  - A VM's vCPUs move into its own row (vms.vcpus, the JSON text
     *    [[vcpu,cpu],...] by vcpu) and each host's allocated CPUs into one
     *    bitmap (cpu_alloc.used: bit c%8 of byte c/8 is CPU c), next to the
     *    CPUs it has (cpu_alloc.present, kept with its cpus rows), which
     *    stands for vm_vcpus' foreign key to cpus.
     *  - The host's VMs are listed in the same row (cpu_alloc.vms, a JSON
     *    array of names) instead of the index vms_host: a placement rewrites
     *    that row anyway, the index cost two more random pages per placement
     *    and departure.  The price: deleting a host scans vms for the foreign
     *    key (kintsugid refuses first when the list is not empty).  A placement
     *    used to write a vm_vcpus row per vCPU into two B-trees (its key and
     *    UNIQUE(host_id, cpu_id)), two random pages per VM and half of the
     *    B-tree work of a placement at 10,000 hosts; it now writes its VM row
     *    and one small, hot row.
     *  - The no-double-allocation guard is that bitmap, tested and updated in
     *    the placement's own transaction (ks_store_sqlite.c is its only
     *    writer); ks_store_integrity_check checks it against the VMs' vCPUs.
     *  - vm_vcpus stays readable, as a view.
     *  - vms_pool only indexes VMs in a pool: most are in none, and every
     *    one of them paid an index write for a lookup that never asks for ''.
     *  - Plans are stored compressed (vms.plan_z: a byte naming a zdicts
     *    row, then a zstd frame; see ks_zdoc.h) and plan_json is NULL: a
     *    2.3 KB plan filled a page per VM, ~200 bytes leave ten VMs a page.
     *    Rows written before keep their text, readers take either.
     *  ks_cpu_bitmap() is an aggregate registered by ks_store_sqlite.c. */
    "ALTER TABLE vms ADD COLUMN vcpus TEXT NOT NULL DEFAULT '[]';\n"
    "UPDATE vms SET vcpus = (SELECT json_group_array(json_array(vcpu, cpu_id)) FROM\n"
    "  (SELECT vcpu, cpu_id FROM vm_vcpus WHERE vm_name = vms.name ORDER BY vcpu))\n"
    "  WHERE EXISTS (SELECT 1 FROM vm_vcpus WHERE vm_name = vms.name);\n"
    "CREATE TABLE cpu_alloc (\n"
    "  host_id TEXT PRIMARY KEY NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,\n"
    "  present BLOB NOT NULL,\n"
    "  used BLOB NOT NULL,\n"
    "  vms TEXT NOT NULL DEFAULT '[]'\n"
    ") STRICT, WITHOUT ROWID;\n"
    "INSERT INTO cpu_alloc (host_id, present, used)\n"
    "  SELECT id, coalesce((SELECT ks_cpu_bitmap(cpu_id) FROM cpus c WHERE c.host_id = hosts.id),\n"
    "                      X''), X'' FROM hosts;\n"
    "UPDATE cpu_alloc SET used =\n"
    "  (SELECT ks_cpu_bitmap(cpu_id) FROM vm_vcpus v WHERE v.host_id = cpu_alloc.host_id)\n"
    "  WHERE host_id IN (SELECT host_id FROM vm_vcpus);\n"
    "UPDATE cpu_alloc SET vms =\n"
    "  (SELECT json_group_array(name) FROM vms v WHERE v.host_id = cpu_alloc.host_id)\n"
    "  WHERE host_id IN (SELECT host_id FROM vms);\n"
    "DROP INDEX vms_host;\n"
    "DROP TABLE vm_vcpus;\n"
    "CREATE VIEW vm_vcpus (vm_name, vcpu, host_id, cpu_id) AS\n"
    "  SELECT v.name, j.value ->> 0, v.host_id, j.value ->> 1 FROM vms v, json_each(v.vcpus) j;\n"
    "DROP INDEX vms_pool;\n"
    "CREATE INDEX vms_pool ON vms(pool, name) WHERE pool <> '';\n"
    "ALTER TABLE vms ADD COLUMN plan_z BLOB;\n"
    "CREATE TABLE zdicts (\n"
    "  id INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 255),\n"
    "  content BLOB NOT NULL\n"
    ") STRICT;\n",
};

#define KS_STORE__N_MIGRATIONS                                                                     \
    ((int)(sizeof(ks_store__migrations) / sizeof(ks_store__migrations[0])))

#endif

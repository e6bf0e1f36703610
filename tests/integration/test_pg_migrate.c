/*
 * test_pg_migrate.c - `kintsugid migrate` and `kintsugid backup` between a
 * SQLite fleet and PostgreSQL, with the real binary.
 *
 * A kintsugid on SQLite registers hosts and places VMs; it is stopped; the
 * fleet is copied to PostgreSQL; a kintsugid on PostgreSQL then serves the
 * same hosts, VMs and tokens, and refuses none of the old CPUs' rules.  A
 * second copy into the now non-empty database is refused; a backup of the
 * PostgreSQL store is a SQLite file another kintsugid can serve from.
 *
 * Needs KS_PG_DIR (the pg_cluster ctest fixture): FAILS without it.
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "test_api_harness.h"

#define DB "ks_test_migrate"

static char g_pgdir[512];
static char g_url[700];

static void quiet_notice(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static void pg_exec(const char *sql) {
  char conninfo[700];
  ks_test_path(conninfo, sizeof(conninfo),
               "host=%s user=postgres dbname=postgres", g_pgdir);
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK)
    fail_msg("connect to the test cluster in %s: %s", g_pgdir,
             PQerrorMessage(c));
  PQsetNoticeProcessor(c, quiet_notice, NULL);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    fail_msg("'%s': %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
}

/* Runs kintsugid with the given arguments; returns its exit status. */
static int run_kintsugid(const char *a1, const char *a2, const char *a3,
                         const char *a4, const char *a5) {
  char bin[600], out[512];
  kd_binary(bin, sizeof(bin));
  char *argv[] = {bin,        (char *)a1, (char *)a2, (char *)a3,
                  (char *)a4, (char *)a5, NULL};
  return kd_run_capture(argv, out, sizeof(out));
}

static kd g_sq, g_pg, g_bk;

static void test_pg__migrate_and_backup(void **state) {
  (void)state;
  pg_exec("DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
  pg_exec("CREATE DATABASE " DB);
  /* A fleet on SQLite. */
  kd_setup(&g_sq, NULL);
  resp r;
  for (int h = 0; h < 4; h++) {
    char host[16];
    snprintf(host, sizeof(host), "h%d", h);
    assert_int_equal(kd_put_report(&g_sq, g_sq.admin, host, 4, 4, 1, "b",
                                   h == 1 ? 2 : -1, "avx2", NULL),
                     201);
  }
  for (int i = 0; i < 10; i++) {
    char body[100];
    snprintf(body, sizeof(body), "{\"name\":\"vm%d\",\"vcpus\":2}", i);
    assert_int_equal(kd_http(&g_sq, &r, "POST", "/v1/vms", g_sq.admin, body),
                     201);
    resp_free(&r);
  }
  assert_int_equal(kd_stop(&g_sq), 0);
  /* The SQLite layout's own invariants hold, and damage to them is found. */
  assert_int_equal(run_kintsugid("check", "--db", g_sq.db, NULL, NULL), 0);
  assert_int_equal(run_kintsugid("check", "--bogus", NULL, NULL, NULL), 2);
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open(g_sq.db, &raw), SQLITE_OK);
  assert_int_equal(
      sqlite3_exec(raw,
                   "CREATE TEMP TABLE keep AS SELECT host_id, used FROM cpu_alloc;"
                   "UPDATE cpu_alloc SET used = X'' WHERE host_id = "
                   "(SELECT host_id FROM vms WHERE name = 'vm3')",
                   NULL, NULL, NULL),
      SQLITE_OK);
  assert_int_equal(run_kintsugid("check", "--db", g_sq.db, NULL, NULL), 1);
  assert_int_equal(
      sqlite3_exec(raw,
                   "UPDATE cpu_alloc SET used = (SELECT k.used FROM keep k "
                   "WHERE k.host_id = cpu_alloc.host_id)",
                   NULL, NULL, NULL),
      SQLITE_OK);
  assert_int_equal(run_kintsugid("check", "--db", g_sq.db, NULL, NULL), 0);
  sqlite3_close(raw);

  char from[700];
  ks_test_path(from, sizeof(from), "sqlite:%s", g_sq.db);
  assert_int_equal(run_kintsugid("migrate", "--from", from, "--to", g_url), 0);
  /* The target is not empty any more: refused (usage-level error 2). */
  assert_int_equal(run_kintsugid("migrate", "--from", from, "--to", g_url), 2);
  assert_int_equal(run_kintsugid("migrate", "--from", from, NULL, NULL), 2);

  /* kintsugid on PostgreSQL serves the same fleet, with the same tokens. */
  ks_test_mkdtemp(g_pg.dir, sizeof(g_pg.dir));
  ks_test_path(g_pg.db, sizeof(g_pg.db), "%s", g_url);
  ks_test_path(g_pg.port_file, sizeof(g_pg.port_file), "%s/port", g_pg.dir);
  ks_test_path(g_pg.log, sizeof(g_pg.log), "%s/kintsugid.log", g_pg.dir);
  snprintf(g_pg.admin, sizeof(g_pg.admin), "%s", g_sq.admin);
  kd_spawn(&g_pg, NULL);
  assert_int_equal(kd_http(&g_pg, &r, "GET", "/v1/vms/vm7", g_pg.admin, NULL),
                   200);
  const char *host = json_string_value(json_object_get(r.json, "host"));
  assert_non_null(host);
  resp_free(&r);
  assert_int_equal(kd_http(&g_pg, &r, "GET", "/v1/hosts", g_pg.admin, NULL),
                   200);
  resp_free(&r);
  /* Placements go on where the copy left off: 10 x 2 vCPUs already taken. */
  for (int i = 10; i < 16; i++) {
    char body[100];
    snprintf(body, sizeof(body), "{\"name\":\"vm%d\",\"vcpus\":2}", i);
    assert_int_equal(kd_http(&g_pg, &r, "POST", "/v1/vms", g_pg.admin, body),
                     201);
    resp_free(&r);
  }
  assert_int_equal(kd_http(&g_pg, &r, "POST", "/v1/vms", g_pg.admin,
                           "{\"name\":\"too-many\",\"vcpus\":2}"),
                   409); /* 4 hosts x 8 CPUs = 32 = 16 x 2 */
  resp_free(&r);

  /* A backup of the PostgreSQL store is a SQLite file kintsugid serves. */
  ks_test_mkdtemp(g_bk.dir, sizeof(g_bk.dir));
  ks_test_path(g_bk.db, sizeof(g_bk.db), "%s/backup.db", g_bk.dir);
  assert_int_equal(run_kintsugid("backup", g_bk.db, "--db", g_url, NULL), 0);
  assert_int_equal(kd_stop(&g_pg), 0);
  ks_test_path(g_bk.port_file, sizeof(g_bk.port_file), "%s/port", g_bk.dir);
  ks_test_path(g_bk.log, sizeof(g_bk.log), "%s/kintsugid.log", g_bk.dir);
  snprintf(g_bk.admin, sizeof(g_bk.admin), "%s", g_sq.admin);
  kd_spawn(&g_bk, NULL);
  assert_int_equal(kd_http(&g_bk, &r, "GET", "/v1/vms/vm15", g_bk.admin, NULL),
                   200);
  resp_free(&r);
  assert_int_equal(kd_stop(&g_bk), 0);
  ks_test_rmdir(g_sq.dir);
  ks_test_rmdir(g_pg.dir);
  ks_test_rmdir(g_bk.dir);
  pg_exec("DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
}

static int teardown(void **state) {
  (void)state;
  kd *all[] = {&g_sq, &g_pg, &g_bk};
  for (int i = 0; i < 3; i++)
    if (all[i]->pid) {
      kill(all[i]->pid, SIGKILL);
      waitpid(all[i]->pid, NULL, 0);
      all[i]->pid = 0;
    }
  return 0;
}

int main(void) {
  const char *d = getenv("KS_PG_DIR");
  if (!d || !d[0] || strlen(d) >= sizeof(g_pgdir)) {
    fprintf(stderr,
            "test_pg_migrate: KS_PG_DIR (the test cluster) is not set\n");
    return 1;
  }
  snprintf(g_pgdir, sizeof(g_pgdir), "%s", d);
  snprintf(g_url, sizeof(g_url), "postgresql:///%s?host=%s&user=postgres", DB,
           d);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_pg__migrate_and_backup, teardown)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}

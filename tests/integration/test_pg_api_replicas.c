/*
 * test_pg_api_replicas.c - three real kintsugid replicas on one PostgreSQL.
 *
 * Parallel HTTP clients spread placements over the replicas (each replica
 * only learns of the others' hosts and VMs through the store's change feed);
 * then the leader replica is killed with SIGKILL and another one must take
 * over its singleton jobs (capacity snapshots here).
 *
 * Checked: every 201 placement is stored once and visible through every
 * replica, no CPU is allocated twice, only one replica writes snapshots at a
 * time, and snapshots go on after the leader dies.
 *
 * Needs KS_PG_DIR (the pg_cluster ctest fixture): FAILS without it.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <libpq-fe.h>

#include "test_api_harness.h"

#define N_REP 3
#define N_HOSTS 40
#define CLIENTS 6
#define VMS_PER_CLIENT 350
#define DB "ks_test_api_replicas"

static char g_pgdir[512]; /* the cluster's socket directory */
static char g_dir[512];   /* the replicas' files */
static char g_url[700];
static kd reps[N_REP];

static void quiet_notice(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static PGconn *pg_connect(const char *db) {
  char conninfo[700];
  ks_test_path(conninfo, sizeof(conninfo), "host=%s user=postgres dbname=%s",
               g_pgdir, db);
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK)
    fail_msg("connect to the test cluster in %s: %s", g_pgdir,
             PQerrorMessage(c));
  PQsetNoticeProcessor(c, quiet_notice, NULL);
  return c;
}

static void pg_exec(const char *db, const char *sql) {
  PGconn *c = pg_connect(db);
  PGresult *r = PQexec(c, sql);
  ExecStatusType es = PQresultStatus(r);
  if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK)
    fail_msg("'%s': %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(c);
}

static long long pg_int(const char *sql) {
  PGconn *c = pg_connect(DB);
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    fail_msg("'%s': %s", sql, PQresultErrorMessage(r));
  long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  PQfinish(c);
  return v;
}

static bool log_has(const kd *d, const char *needle) {
  char *log = ks_test_read_file(d->log, NULL);
  bool yes = log && strstr(log, needle);
  free(log);
  return yes;
}

typedef struct client {
  int no;
  char (*acked)[KS_ID_MAX];
  int n_acked, n_conflict, n_full, n_other;
  long last_status;
  char last_body[300];
} client;

static void *client_main(void *arg) {
  client *c = arg;
  for (int i = 0; i < VMS_PER_CLIENT; i++) {
    const kd *d = &reps[(c->no + i) % N_REP]; /* spread over the replicas */
    char name[KS_ID_MAX], body[200];
    snprintf(name, sizeof(name), "vm-%d-%d", c->no, i);
    snprintf(body, sizeof(body), "{\"name\":\"%s\",\"vcpus\":%d}", name,
             1 + i % 2);
    resp r;
    long s = kd_http(d, &r, "POST", "/v1/vms", reps[0].admin, body);
    if (s == 201) {
      snprintf(c->acked[c->n_acked++], KS_ID_MAX, "%s", name);
    } else if (s == 409 && strcmp(kd_err_code(&r), "no_capacity") == 0) {
      c->n_full++; /* the fleet is full: expected at the end */
    } else if (s == 409) {
      c->n_conflict++; /* lost the race for CPUs on every attempt */
    } else {
      c->n_other++;
      c->last_status = s;
      snprintf(c->last_body, sizeof(c->last_body), "%s", r.body ? r.body : "");
    }
    resp_free(&r);
  }
  return NULL;
}

static void start_replica(int i, const char *const *args) {
  kd *d = &reps[i];
  ks_test_path(d->dir, sizeof(d->dir), "%s/r%d", g_dir, i);
  assert_true(mkdir(d->dir, 0700) == 0 || access(d->dir, F_OK) == 0);
  ks_test_path(d->db, sizeof(d->db), "%s", g_url);
  ks_test_path(d->port_file, sizeof(d->port_file), "%s/port", d->dir);
  ks_test_path(d->log, sizeof(d->log), "%s/kintsugid.log", d->dir);
  if (i == 0)
    kd_token(d, "admin", NULL, d->admin, sizeof(d->admin));
  else
    snprintf(d->admin, sizeof(d->admin), "%s", reps[0].admin);
  kd_spawn(d, args);
}

static void test_pg_api__replicas(void **state) {
  (void)state;
  pg_exec("postgres", "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
  pg_exec("postgres", "CREATE DATABASE " DB);
  static const char *const args[] = {"--lost-after", "3600",
                                     "--snapshot-interval", "1", NULL};
  for (int i = 0; i < N_REP; i++)
    start_replica(i, args);
  /* Hosts arrive through different replicas. */
  for (int h = 0; h < N_HOSTS; h++) {
    char host[32];
    snprintf(host, sizeof(host), "h%02d", h);
    long s = kd_put_report(&reps[h % N_REP], reps[0].admin, host, 32, 32, 1,
                           "boot", -1, NULL, NULL);
    if (s != 201 && s != 200)
      fail_msg("report of %s: status %ld", host, s);
  }

  client cl[CLIENTS];
  pthread_t th[CLIENTS];
  memset(cl, 0, sizeof(cl));
  uint64_t t0 = kd_mono_ms();
  for (int i = 0; i < CLIENTS; i++) {
    cl[i].no = i;
    cl[i].acked = calloc(VMS_PER_CLIENT, KS_ID_MAX);
    assert_non_null(cl[i].acked);
    assert_int_equal(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
  }
  for (int i = 0; i < CLIENTS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);
  uint64_t t1 = kd_mono_ms();
  int acked = 0, conflicts = 0, full = 0;
  for (int i = 0; i < CLIENTS; i++) {
    if (cl[i].n_other)
      fail_msg("client %d: %d unexpected answers, last %ld: %s", i,
               cl[i].n_other, cl[i].last_status, cl[i].last_body);
    acked += cl[i].n_acked;
    conflicts += cl[i].n_conflict;
    full += cl[i].n_full;
  }
  /* Every acknowledged VM is stored once and every replica serves it. */
  assert_int_equal(pg_int("SELECT count(*) FROM vms"), acked);
  assert_int_equal(pg_int("SELECT count(*) FROM vm_vcpus"),
                   pg_int("SELECT count(*) FROM (SELECT DISTINCT host_id, "
                          "cpu_id FROM vm_vcpus) d"));
  for (int i = 0; i < CLIENTS; i++)
    for (int k = 0; k < cl[i].n_acked; k += 7) {
      char path[128];
      snprintf(path, sizeof(path), "/v1/vms/%s", cl[i].acked[k]);
      resp r;
      long s = kd_http(&reps[(i + k + 1) % N_REP], &r, "GET", path,
                       reps[0].admin, NULL);
      resp_free(&r);
      if (s != 200)
        fail_msg("GET %s through replica %d: %ld", path, (i + k + 1) % N_REP,
                 s);
    }
  /* 40 hosts x 64 CPUs, VMs of 1-2 vCPUs: the fleet fills up (~1700 VMs). */
  assert_int_equal(pg_int("SELECT count(*) FROM vm_vcpus"), N_HOSTS * 64);
  assert_true(acked >= 1500);
  assert_true(conflicts * 20 <
              acked); /* retries on a refreshed index resolve races */

  /* One leader: snapshots come from one replica (about one per second). */
  int leader = -1;
  uint64_t deadline = kd_mono_ms() + 20000;
  while (leader < 0 && kd_mono_ms() < deadline) {
    for (int i = 0; i < N_REP; i++)
      if (log_has(&reps[i], "is now the leader"))
        leader = leader < 0 ? i : -2;
    if (leader == -2)
      fail_msg("two replicas claim leadership");
    if (leader < 0)
      kd_nap_ms(50);
  }
  assert_true(leader >= 0);
  long long s0 =
      pg_int("SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet'");
  uint64_t w0 = kd_mono_ms();
  kd_nap_ms(3000);
  long long s1 =
      pg_int("SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet'");
  double per_s = (double)(s1 - s0) * 1000.0 / (double)(kd_mono_ms() - w0);
  assert_true(s1 > s0);
  assert_true(per_s < 2.0); /* three writers would make ~3 per second */

  /* The leader dies without a goodbye: another replica takes the jobs. */
  uint64_t tk = kd_mono_ms();
  kill(reps[leader].pid, SIGKILL);
  int st = 0;
  waitpid(reps[leader].pid, &st, 0);
  reps[leader].pid = 0;
  int next = -1;
  deadline = kd_mono_ms() + 30000;
  while (next < 0 && kd_mono_ms() < deadline) {
    for (int i = 0; i < N_REP; i++)
      if (i != leader && log_has(&reps[i], "is now the leader"))
        next = i;
    if (next < 0)
      kd_nap_ms(50);
  }
  assert_true(next >= 0);
  uint64_t handover_ms = kd_mono_ms() - tk;
  long long s2 =
      pg_int("SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet'");
  deadline = kd_mono_ms() + 10000;
  while (
      pg_int("SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet'") <=
          s2 &&
      kd_mono_ms() < deadline)
    kd_nap_ms(100);
  assert_true(
      pg_int("SELECT count(*) FROM capacity_snapshots WHERE scope = 'fleet'") >
      s2);
  /* The survivors still serve: a VM deleted through one replica frees CPUs
   * the other one can place on once the feed told it. */
  resp r;
  char path[128];
  snprintf(path, sizeof(path), "/v1/vms/%s", cl[0].acked[0]);
  int other = -1;
  for (int i = 0; i < N_REP; i++)
    if (i != leader && i != next)
      other = i;
  long ds = kd_http(&reps[other], &r, "DELETE", path, reps[0].admin, NULL);
  resp_free(&r);
  if (ds != 204 && ds != 200)
    fail_msg("DELETE %s: %ld", path, ds);
  long ps = 0;
  deadline = kd_mono_ms() + 10000;
  while (kd_mono_ms() < deadline) {
    ps = kd_http(&reps[next], &r, "POST", "/v1/vms", reps[0].admin,
                 "{\"name\":\"after-kill\",\"vcpus\":1}");
    resp_free(&r);
    if (ps == 201)
      break;
    kd_nap_ms(100);
  }
  assert_int_equal(ps, 201);

  printf("api replicas: %d placements acknowledged, %d gave up on conflicts, "
         "%d no capacity; "
         "%.0f placements/s over %d replicas and %d clients; leader %d killed, "
         "replica %d led "
         "after %llu ms\n",
         acked, conflicts, full, 1000.0 * acked / (double)(t1 - t0 + 1), N_REP,
         CLIENTS, leader, next, (unsigned long long)handover_ms);
  for (int i = 0; i < CLIENTS; i++)
    free(cl[i].acked);
  for (int i = 0; i < N_REP; i++)
    if (reps[i].pid)
      assert_int_equal(kd_stop(&reps[i]), 0);
  ks_test_rmdir(g_dir);
  pg_exec("postgres", "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
}

/*
 * Plan pushes are a leader job too: a plan its replica never delivered (that
 * replica died first, or runs with --no-plan-push as here) is pushed by the
 * leader's sweep.  Replica 0 pushes and leads; replica 1 places but never
 * pushes; a real agent (dry-run driver) must still get the plan.
 */
static void test_pg_api__leader_pushes_undelivered_plans(void **state) {
  (void)state;
  pg_exec("postgres", "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
  pg_exec("postgres", "CREATE DATABASE " DB);
  assert_true(mkdir(g_dir, 0700) == 0 || access(g_dir, F_OK) == 0);
  static const char *const lead_args[] = {"--lost-after", "3600", NULL};
  static const char *const quiet_args[] = {"--lost-after", "3600",
                                           "--no-plan-push", NULL};
  start_replica(0, lead_args);
  uint64_t deadline = kd_mono_ms() + 20000;
  while (!log_has(&reps[0], "is now the leader") && kd_mono_ms() < deadline)
    kd_nap_ms(50);
  assert_true(log_has(&reps[0], "is now the leader"));
  start_replica(1, quiet_args);

  /* The agent reports through replica 0 and serves plans (dry-run driver). */
  char token[128], bin[600], server[64], fixture[700], state_dir[700], log[700];
  kd_token(&reps[0], "agent", "sweep-h1", token, sizeof(token));
  ks_test_path(bin, sizeof(bin), "%s/agent/kintsugi-agent", ks_test_build_dir());
  ks_test_path(server, sizeof(server), "http://127.0.0.1:%u", reps[0].port);
  ks_test_path(fixture, sizeof(fixture),
               "%s/hwloc-x86/Intel-Haswell-2xXeon-E5-2680v3.tar.bz2",
               ks_test_fixtures_dir());
  ks_test_path(state_dir, sizeof(state_dir), "%s/agent-state", g_dir);
  ks_test_path(log, sizeof(log), "%s/agent.log", g_dir);
  char *argv[] = {bin, (char *)"run", (char *)"--server", server,
                  (char *)"--token", token, (char *)"--fixture", fixture,
                  (char *)"--host-id", (char *)"sweep-h1", (char *)"--listen",
                  (char *)"127.0.0.1:0", (char *)"--insecure-no-auth",
                  (char *)"--driver", (char *)"dry-run", (char *)"--state-dir",
                  state_dir, (char *)"--heartbeat", (char *)"1", NULL};
  pid_t agent = fork();
  assert_true(agent >= 0);
  if (agent == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execv(argv[0], argv);
    _exit(127);
  }

  /* Replica 1 learns the host from the feed, then places on it. */
  resp r;
  long s = 0;
  deadline = kd_mono_ms() + 20000;
  while (kd_mono_ms() < deadline) {
    s = kd_http(&reps[1], &r, "POST", "/v1/vms", reps[0].admin,
                "{\"name\":\"swept-1\",\"vcpus\":1,\"host\":\"sweep-h1\"}");
    resp_free(&r);
    if (s == 201)
      break;
    kd_nap_ms(100);
  }
  if (s != 201) {
    kill(agent, SIGKILL);
    waitpid(agent, NULL, 0);
    fail_msg("POST /v1/vms through replica 1: %ld", s);
  }
  /* Nobody but the leader's sweep can deliver it. */
  json_int_t applied = 0;
  deadline = kd_mono_ms() + 30000;
  while (kd_mono_ms() < deadline) {
    if (kd_http(&reps[0], &r, "GET", "/v1/vms/swept-1", reps[0].admin, NULL) ==
        200)
      applied = json_integer_value(json_object_get(r.json, "applied_generation"));
    resp_free(&r);
    if (applied >= 1)
      break;
    kd_nap_ms(100);
  }
  kill(agent, SIGTERM);
  waitpid(agent, NULL, 0);
  if (applied < 1)
    fail_msg("the leader never delivered swept-1's plan (applied %lld)",
             (long long)applied);
  assert_true(log_has(&reps[0], "plan push sweep queued"));
  for (int i = 0; i < 2; i++)
    assert_int_equal(kd_stop(&reps[i]), 0);
  ks_test_rmdir(g_dir);
  pg_exec("postgres", "DROP DATABASE IF EXISTS " DB " WITH (FORCE)");
}

/* Whatever happened, no replica outlives the test. */
static int teardown(void **state) {
  (void)state;
  for (int i = 0; i < N_REP; i++)
    if (reps[i].pid) {
      kill(reps[i].pid, SIGKILL);
      waitpid(reps[i].pid, NULL, 0);
      reps[i].pid = 0;
    }
  return 0;
}

int main(void) {
  const char *d = getenv("KS_PG_DIR");
  if (!d || !d[0] || strlen(d) >= 400) {
    fprintf(stderr,
            "test_pg_api_replicas: KS_PG_DIR (the test cluster) is not set\n");
    return 1;
  }
  snprintf(g_url, sizeof(g_url), "postgresql:///%s?host=%s&user=postgres", DB,
           d);
  snprintf(g_pgdir, sizeof(g_pgdir), "%s", d);
  ks_test_mkdtemp(g_dir, sizeof(g_dir));
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_pg_api__replicas, teardown),
      cmocka_unit_test_teardown(test_pg_api__leader_pushes_undelivered_plans,
                                teardown)};
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}

/*
 * cmd_selftest.c - `kintsugi-agent selftest`: runs the known-answer CPU
 * feature self-tests on every CPU this process may use (or one), and prints a
 * table or JSON.  Exit status: 0 no fault, 1 a fault found, 2 usage error or a
 * CPU that cannot be tested.
 */
#include <getopt.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ks_agent_cmds.h"
#include "ks_defects.h"
#include "ks_selftest.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kintsugi-agent selftest [--cpu N] [--feature F] [--json]\n"
            "                               [--inject CPU:FEATURE[,CPU:FEATURE...]] [--min-ms N]\n"
            "\n"
            "Runs the known-answer self-tests of each CPU feature group pinned on each\n"
            "logical CPU and prints, per CPU and test: pass, FAIL or not-present, the time\n"
            "taken and the features a failure proves faulty.\n"
            "\n"
            "  --cpu N        test only logical CPU N (default: every CPU we may run on)\n"
            "  --feature F    run only the tests for feature or test name F (e.g. avx2, crc32)\n"
            "  --json         print JSON instead of a table\n"
            "  --inject SPEC  make test FEATURE fail on CPU (fault injection, for testing the\n"
            "                 detection path); default from $%s\n"
            "  --min-ms N     run each test's workload for at least N ms (default %u)\n"
            "\n"
            "Exit status: 0 no fault, 1 a fault was found, 2 usage error.\n",
            KS_DEFECTS_INJECT_ENV, KS_SELFTEST_DEFAULT_MIN_TEST_US / 1000);
}

static bool parse_uint(const char *s, uint32_t max, uint32_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > max)
            return false;
    }
    *out = (uint32_t)v;
    return true;
}

static void print_row(const ks_selftest_cpu_result *r, const ks_selftest_result *t)
{
    char faulty[KS_TEXT_MAX] = "";
    size_t off = 0;
    if (t->status == KS_SELFTEST_FAIL && t->whole_cpu)
        snprintf(faulty, sizeof(faulty), "(whole cpu)");
    for (int b = ks_featset_next(&t->faulty, 0); b >= 0 && off < sizeof(faulty);
         b = ks_featset_next(&t->faulty, (unsigned)b + 1)) {
        int n = snprintf(faulty + off, sizeof(faulty) - off, "%s%s", off ? "," : "",
                         ks_feature_name((unsigned)b));
        if (n < 0)
            break;
        off += (size_t)n;
    }
    printf("%-4d %-16s %-12s %8.2f  %s\n", (int)r->cpu, t->test,
           ks_selftest_status_to_str((ks_selftest_status)t->status), (double)t->elapsed_us / 1000.0,
           faulty);
    if (t->status == KS_SELFTEST_FAIL || t->status == KS_SELFTEST_SKIPPED)
        printf("     %s\n", t->detail);
}

int ks_agent_cmd_selftest(int argc, char **argv)
{
    static const struct option longopts[] = {{"cpu", required_argument, NULL, 'c'},
                                             {"feature", required_argument, NULL, 'f'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"inject", required_argument, NULL, 'i'},
                                             {"min-ms", required_argument, NULL, 'm'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    ks_selftest_options so = KS_SELFTEST_OPTIONS_INIT;
    ks_selftest_inject inj;
    ks_selftest_cpu_result *res = NULL;
    json_t *doc = NULL, *cpus_json = NULL;
    const char *inject_spec = getenv(KS_DEFECTS_INJECT_ENV);
    bool json_out = false;
    int32_t only_cpu = -1;
    uint32_t v, n_failed = 0, n_cpus = 0;
    uint64_t total_us = 0;
    int status = 2, opt;
    ks_err err;
    cpu_set_t allowed;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:f:ji:m:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            if (!parse_uint(optarg, KS_REPORT_MAX_CPUS - 1, &v)) {
                fprintf(stderr, "kintsugi-agent selftest: --cpu '%s' is not a cpu number\n",
                        optarg);
                return 2;
            }
            only_cpu = (int32_t)v;
            break;
        case 'f':
            if (ks_selftest_resolve(&so.tests, optarg, &err) != KS_OK) {
                fprintf(stderr, "kintsugi-agent selftest: --feature: %s\n", err.msg);
                return 2;
            }
            break;
        case 'j':
            json_out = true;
            break;
        case 'i':
            inject_spec = optarg;
            break;
        case 'm':
            if (!parse_uint(optarg, 10000, &v) || v == 0) {
                fprintf(stderr, "kintsugi-agent selftest: --min-ms '%s' is not 1..10000\n", optarg);
                return 2;
            }
            so.min_test_us = v * 1000;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kintsugi-agent selftest: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (ks_selftest_inject_parse(&inj, inject_spec, &err) != KS_OK) {
        fprintf(stderr, "kintsugi-agent selftest: %s\n", err.msg);
        return 2;
    }
    so.inject = &inj;
    so.isolate = true; /* a workload that crashes is a finding, not the end of the command */
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        fprintf(stderr, "kintsugi-agent selftest: cannot read this process's cpu set\n");
        return 2;
    }
    if (only_cpu >= 0 && (only_cpu >= CPU_SETSIZE || !CPU_ISSET(only_cpu, &allowed))) {
        fprintf(stderr, "kintsugi-agent selftest: cpu %d is not available to this process\n",
                (int)only_cpu);
        return 2;
    }
    for (uint32_t i = 0; i < inj.n; i++) {
        if (inj.e[i].cpu >= CPU_SETSIZE || !CPU_ISSET(inj.e[i].cpu, &allowed)) {
            fprintf(stderr,
                    "kintsugi-agent selftest: inject entry %u: cpu %d is not available "
                    "to this process\n",
                    i + 1, (int)inj.e[i].cpu);
            return 2;
        }
    }

    res = malloc(sizeof(*res));
    doc = json_object();
    cpus_json = doc ? json_array() : NULL;
    /* set_new takes cpus_json even when it fails: doc owns it from here on */
    if (!res || !doc || !cpus_json || json_object_set_new(doc, "cpus", cpus_json)) {
        fprintf(stderr, "kintsugi-agent selftest: out of memory\n");
        goto done;
    }
    if (!json_out)
        printf("%-4s %-16s %-12s %8s  %s\n", "cpu", "test", "status", "ms", "faulty");
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &allowed) || (only_cpu >= 0 && cpu != only_cpu))
            continue;
        if (ks_selftest_run_cpu(res, cpu, &so, &err) != KS_OK) {
            fprintf(stderr, "kintsugi-agent selftest: cpu %d: %s\n", cpu, err.msg);
            goto done;
        }
        n_cpus++;
        n_failed += ks_selftest_n_failed(res);
        total_us += res->elapsed_us;
        if (json_out) {
            if (json_array_append_new(cpus_json, ks_selftest_cpu_result_to_json(res))) {
                fprintf(stderr, "kintsugi-agent selftest: out of memory\n");
                goto done;
            }
            continue;
        }
        uint32_t counts[KS_SELFTEST_STATUS__COUNT] = {0};
        for (uint32_t i = 0; i < res->n_results; i++) {
            print_row(res, &res->results[i]);
            counts[res->results[i].status]++;
        }
        printf("cpu %d: %u pass, %u FAIL, %u not-present, %u skipped; suite %.1f ms\n", cpu,
               counts[KS_SELFTEST_PASS], counts[KS_SELFTEST_FAIL], counts[KS_SELFTEST_NOT_PRESENT],
               counts[KS_SELFTEST_SKIPPED], (double)res->elapsed_us / 1000.0);
    }
    if (json_out) {
        if (json_object_set_new(doc, "failed", json_integer(n_failed)) ||
            json_object_set_new(doc, "elapsed_ms", json_real((double)total_us / 1000.0)) ||
            json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) != 0) {
            fprintf(stderr, "kintsugi-agent selftest: cannot write the JSON output\n");
            goto done;
        }
        printf("\n");
    } else {
        printf("%u cpu(s), %u fault(s) found, %.1f ms in total\n", n_cpus, n_failed,
               (double)total_us / 1000.0);
    }
    status = n_failed ? 1 : 0;
done:
    json_decref(doc);
    free(res);
    return status;
}

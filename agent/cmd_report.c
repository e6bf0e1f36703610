/*
 * cmd_report.c - `kintsugi-agent report`: discovers this host (or a recorded
 * fixture) and prints the host report JSON on stdout.
 *
 * Exit status: 0 report printed; 2 usage error or a missing/corrupt fixture
 * (one line on stderr); 1 any other discovery failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ks_agent_cmds.h"
#include "ks_discover.h"

static void report_usage(FILE *out)
{
    fprintf(out,
            "usage: kintsugi-agent report [options]\n"
            "\n"
            "Discovers the CPU topology, core kinds, per-CPU native features, PMU and\n"
            "vulnerabilities, and prints the host report (JSON, schema %d).\n"
            "\n"
            "options:\n"
            "  --fixture PATH          report a recorded machine: a CPUID dump directory\n"
            "                          (pu<N> + hwloc-cpuid-info) or a sysfs tree (sys/ +\n"
            "                          proc/), as a directory or a .tar.bz2 tarball\n"
            "  --fixture-tarball PATH  same as --fixture (kept for scripts)\n"
            "  --host-id ID            host id (default: /etc/machine-id, or fx-<fixture>)\n"
            "  --hostname NAME         host name (default: this host's / the fixture's)\n"
            "  --boot-id ID            boot id (default: the kernel's)\n"
            "  --generation N          report generation (default 1)\n"
            "  --pretty                indent the JSON\n"
            "  --help                  print this help and exit\n",
            KS_REPORT_SCHEMA);
}

static int parse_generation(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v == 0)
        return -1;
    *out = v;
    return 0;
}

int ks_agent_cmd_report(int argc, char **argv)
{
    ks_discover_options opts = KS_DISCOVER_OPTIONS_INIT;
    bool pretty = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            report_usage(stdout);
            return 0;
        } else if (strcmp(a, "--pretty") == 0) {
            pretty = true;
            continue;
        } else if (strcmp(a, "--fixture") == 0 || strcmp(a, "--fixture-tarball") == 0) {
            target = &opts.fixture_path;
        } else if (strcmp(a, "--host-id") == 0) {
            target = &opts.host_id;
        } else if (strcmp(a, "--hostname") == 0) {
            target = &opts.hostname;
        } else if (strcmp(a, "--boot-id") == 0) {
            target = &opts.boot_id;
        } else if (strcmp(a, "--generation") == 0) {
            if (i + 1 >= argc || parse_generation(argv[i + 1], &opts.generation) != 0) {
                fprintf(stderr, "kintsugi-agent report: --generation needs a positive integer\n");
                return 2;
            }
            i++;
            continue;
        } else {
            fprintf(stderr, "kintsugi-agent report: unknown option '%s' (try --help)\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kintsugi-agent report: %s needs a value\n", a);
            return 2;
        }
        *target = argv[++i];
    }

    ks_report *r = NULL;
    ks_err err;
    ks_err_clear(&err);
    ks_code rc = ks_discover_host(&r, &opts, &err);
    if (rc != KS_OK) {
        fprintf(stderr, "kintsugi-agent report: %s\n", err.msg[0] ? err.msg : ks_code_str(rc));
        return rc == KS_EINVAL || rc == KS_ENOTFOUND ? 2 : 1;
    }
    int status = 0;
    json_t *doc = ks_report_to_json(r);
    char *text = doc ? json_dumps(doc, pretty ? JSON_INDENT(2) : JSON_COMPACT) : NULL;
    if (!text) {
        fprintf(stderr, "kintsugi-agent report: out of memory encoding the report\n");
        status = 1;
    } else if (fputs(text, stdout) < 0 || fputc('\n', stdout) < 0 || fflush(stdout) != 0) {
        fprintf(stderr, "kintsugi-agent report: cannot write the report\n");
        status = 1;
    }
    free(text);
    json_decref(doc);
    ks_report_free(r);
    return status;
}

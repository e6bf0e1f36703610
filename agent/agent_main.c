/*
 * agent_main.c - kintsugi-agent: subcommand dispatch.  Each subcommand lives in
 * its own cmd_*.c and returns the process exit status (0 ok, 1 failure found,
 * 2 usage or input error).
 */
#include <stdio.h>
#include <string.h>

#include "ks_agent_cmds.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kintsugi-agent <command> [options]\n"
            "\n"
            "Discovers this host's CPU topology, core kinds and per-CPU usable feature\n"
            "masks, reports them to kintsugid, and applies vCPU plans to the VMM.\n"
            "\n"
            "commands:\n"
            "  report     print the host report JSON and exit\n"
            "  selftest   run the per-CPU feature self-tests and print the results\n"
            "  run        run as a daemon: report to kintsugid, serve plans\n"
            "\n"
            "Run 'kintsugi-agent <command> --help' for a command's options.\n"
            "  --version  print the version and exit\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("kintsugi-agent %s\n", KS_VERSION);
        return 0;
    }
    if (strcmp(cmd, "report") == 0)
        return ks_agent_cmd_report(argc - 1, argv + 1);
    if (strcmp(cmd, "selftest") == 0)
        return ks_agent_cmd_selftest(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return ks_agent_cmd_run(argc - 1, argv + 1);
    fprintf(stderr, "kintsugi-agent: unknown command '%s' (try --help)\n", cmd);
    return 2;
}

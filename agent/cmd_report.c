/* cmd_report.c - placeholder until the subcommand lands (see issues). */
#include <stdio.h>

#include "ks_agent_cmds.h"

int ks_agent_cmd_report(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "kintsugi-agent: 'report' is not available in this build\n");
    return 2;
}

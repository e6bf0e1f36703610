/*
 * ks_agent_cmds.h - the kintsugi-agent subcommands.  Each takes argv with
 * argv[0] = the command name and returns the exit status (0 ok, 1 failure
 * found, 2 usage or input error).  Each prints its own --help.
 */
#ifndef KS_AGENT_CMDS_H
#define KS_AGENT_CMDS_H

int ks_agent_cmd_report(int argc, char **argv);   /* cmd_report.c */
int ks_agent_cmd_selftest(int argc, char **argv); /* cmd_selftest.c */
int ks_agent_cmd_run(int argc, char **argv);      /* cmd_run.c */

#endif

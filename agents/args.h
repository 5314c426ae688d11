/* Command-line parsing. Bad arguments print one line on stderr and exit with status 2; a system
 * failure before the run (out of memory, socket(), threads, signals) exits with status 3. */
#ifndef ARGS_H
#define ARGS_H

#include "agent.h"

void parse_args(int argc, char **argv, struct config *cfg);
#define AGENT_EXIT_USAGE 2  /* bad arguments: nothing started */
#define AGENT_EXIT_SYSTEM 3 /* the system refused a resource: nothing started */

void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void system_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
const char *mode_name(enum mode m);
const char *workload_name(enum workload w);
const char *role_name(enum role r);
const char *receive_name(enum receive_mode r);
const char *uring_buffers_name(int registered);

#endif

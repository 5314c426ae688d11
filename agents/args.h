/* Command-line parsing. Bad arguments print one line on stderr and exit with status 2. */
#ifndef ARGS_H
#define ARGS_H

#include "agent.h"

void parse_args(int argc, char **argv, struct config *cfg);
void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
const char *mode_name(enum mode m);
const char *workload_name(enum workload w);
const char *role_name(enum role r);

#endif

/* The result document of docs/agent-protocol.md, written with stdio. */
#ifndef JSON_H
#define JSON_H

#include <stdio.h>

/* The whole document, from g_run and each module's own part (tcp_info, host_counters). */
void json_write(FILE *f);

#endif

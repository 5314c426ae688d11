/* The result document of docs/agent-protocol.md, written with stdio. */
#ifndef JSON_H
#define JSON_H

#include "agent.h"

#include <stdio.h>

void json_write(FILE *f);
/* A JSON string of `s`, escaped. */
void json_str(FILE *f, const char *s);

#endif

/* A JSON string, escaped: the one primitive that every writer of the result document shares
 * (json.c writes the document, hostsnap.c its host_counters). */
#ifndef JSONSTR_H
#define JSONSTR_H

#include <stdio.h>

void json_str(FILE *f, const char *s);

#endif

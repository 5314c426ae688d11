#include "hostsnap.h"

#include "json.h"
#include "tcpinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *key, *path;
} files[] = {
    {"stat", "/proc/stat"},
    {"softirqs", "/proc/softirqs"},
    {"interrupts", "/proc/interrupts"},
    {"snmp", "/proc/net/snmp"},
    {"netstat", "/proc/net/netstat"},
};
#define NFILES (sizeof files / sizeof files[0])

static struct {
    int taken;
    double t;
    char *text[NFILES]; /* NUL-terminated; NULL: missing, unreadable or too large */
} snaps[2];

/* The whole file, or NULL. /proc files have no size, so it reads until EOF, growing a buffer up
 * to HOSTSNAP_MAX_BYTES. */
static char *slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL; /* a host without the file: its columns stay blank */
    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (len + 1 >= cap) {
            if (cap >= HOSTSNAP_MAX_BYTES) {
                free(buf);
                buf = NULL;
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            buf = NULL;
            break;
        }
        if (n == 0) {
            buf[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    if (close(fd) != 0 && buf) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

void hostsnap_take(int which, double t)
{
    if (!tcpinfo_enabled() || (which != HOSTSNAP_START && which != HOSTSNAP_END))
        return;
    snaps[which].t = t;
    for (size_t i = 0; i < NFILES; i++)
        snaps[which].text[i] = slurp(files[i].path);
    snaps[which].taken = 1;
}

static void one(FILE *f, int which)
{
    if (!snaps[which].taken) {
        fputs("null", f);
        return;
    }
    fprintf(f, "{\"t\": %.6f", snaps[which].t);
    for (size_t i = 0; i < NFILES; i++) {
        fprintf(f, ", \"%s\": ", files[i].key);
        if (snaps[which].text[i])
            json_str(f, snaps[which].text[i]);
        else
            fputs("null", f);
    }
    fputc('}', f);
}

void hostsnap_json(FILE *f)
{
    fputs("\"host_counters\": ", f);
    if (!tcpinfo_enabled()) {
        fputs("null", f);
        return;
    }
    long hz = sysconf(_SC_CLK_TCK); /* /proc/stat's tick */
    if (hz > 0)
        fprintf(f, "{\"clk_tck\": %ld, \"start\": ", hz);
    else
        fputs("{\"clk_tck\": null, \"start\": ", f);
    one(f, HOSTSNAP_START);
    fputs(", \"end\": ", f);
    one(f, HOSTSNAP_END);
    fputc('}', f);
}

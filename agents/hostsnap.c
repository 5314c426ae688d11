#include "hostsnap.h"

#include "jsonstr.h"
#include "tcpinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
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
    char *ethtool;      /* the data NIC's statistics as `ethtool -S` prints them, or NULL */
} snaps[2];

/* The data NIC: the interface holding connection 0's local address, found once before the window. */
static char nic[IF_NAMESIZE];
static char nic_bus[ETHTOOL_BUSINFO_LEN];
static uint32_t nic_nstats;
static char *nic_names; /* nic_nstats names of ETH_GSTRING_LEN bytes each, or NULL */

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

/* SIOCETHTOOL on the data NIC; -1 on any failure (a driver without the command: EOPNOTSUPP). */
static int ethtool_ioctl(void *cmd)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, nic, sizeof nic < sizeof ifr.ifr_name ? sizeof nic : sizeof ifr.ifr_name);
    ifr.ifr_data = cmd;
    int rc = ioctl(s, SIOCETHTOOL, &ifr);
    if (close(s) != 0)
        rc = -1;
    return rc < 0 ? -1 : 0;
}

/* Whether an interface address is the socket's local address (an IPv4-mapped IPv6 one counts as IPv4). */
static int same_address(const struct sockaddr *ifa, const struct sockaddr_storage *local)
{
    const void *want = NULL;
    int family = local->ss_family;
    if (family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)local)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            family = AF_INET;
            want = &a6->s6_addr[12];
        } else {
            want = a6;
        }
    } else if (family == AF_INET) {
        want = &((const struct sockaddr_in *)local)->sin_addr;
    }
    if (!want || ifa->sa_family != family)
        return 0;
    if (family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)ifa)->sin_addr, want, 4) == 0;
    return memcmp(&((const struct sockaddr_in6 *)ifa)->sin6_addr, want, 16) == 0;
}

void hostsnap_find_nic(int fd)
{
    if (!tcpinfo_enabled() || fd < 0 || nic[0])
        return;
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    struct ifaddrs *ifs;
    if (getsockname(fd, (struct sockaddr *)&local, &len) != 0 || getifaddrs(&ifs) != 0)
        return; /* no NIC: its columns stay blank */
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_name && strlen(i->ifa_name) < sizeof nic && same_address(i->ifa_addr, &local)) {
            strcpy(nic, i->ifa_name);
            break;
        }
    }
    freeifaddrs(ifs);
    if (!nic[0])
        return;
    struct ethtool_drvinfo info;
    memset(&info, 0, sizeof info);
    info.cmd = ETHTOOL_GDRVINFO;
    if (ethtool_ioctl(&info) != 0)
        return; /* lo has no driver info: no bus, no statistics */
    memcpy(nic_bus, info.bus_info, sizeof nic_bus - 1);
    if (info.n_stats == 0 || info.n_stats > 65536)
        return;
    struct ethtool_gstrings *names = calloc(1, sizeof *names + (size_t)info.n_stats * ETH_GSTRING_LEN);
    if (!names)
        return;
    names->cmd = ETHTOOL_GSTRINGS;
    names->string_set = ETH_SS_STATS;
    names->len = info.n_stats;
    if (ethtool_ioctl(names) == 0 && names->len == info.n_stats) {
        nic_names = malloc((size_t)info.n_stats * ETH_GSTRING_LEN);
        if (nic_names) {
            memcpy(nic_names, names->data, (size_t)info.n_stats * ETH_GSTRING_LEN);
            nic_nstats = info.n_stats;
        }
    }
    free(names);
}

/* The NIC's statistics now, as `ethtool -S` prints them (so one parser reads both), or NULL. */
static char *nic_stats(void)
{
    if (!nic_names)
        return NULL;
    struct ethtool_stats *st = calloc(1, sizeof *st + (size_t)nic_nstats * sizeof(uint64_t));
    if (!st)
        return NULL;
    st->cmd = ETHTOOL_GSTATS;
    st->n_stats = nic_nstats;
    char *text = NULL;
    size_t cap = 32 + (size_t)nic_nstats * (ETH_GSTRING_LEN + 32);
    if (ethtool_ioctl(st) == 0 && st->n_stats == nic_nstats && (text = malloc(cap))) {
        size_t len = (size_t)snprintf(text, cap, "NIC statistics:\n");
        for (uint32_t i = 0; i < nic_nstats && len < cap; i++)
            len += (size_t)snprintf(text + len, cap - len, "     %.*s: %llu\n", ETH_GSTRING_LEN,
                                    nic_names + (size_t)i * ETH_GSTRING_LEN, (unsigned long long)st->data[i]);
        if (len >= cap) { /* cannot happen with the sizes above; a cut table would parse wrong */
            free(text);
            text = NULL;
        }
    }
    free(st);
    return text;
}

void hostsnap_take(int which, double t)
{
    if (!tcpinfo_enabled() || (which != HOSTSNAP_START && which != HOSTSNAP_END))
        return;
    snaps[which].t = t;
    for (size_t i = 0; i < NFILES; i++)
        snaps[which].text[i] = slurp(files[i].path);
    snaps[which].ethtool = nic_stats();
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
    fputs(", \"ethtool\": ", f);
    if (snaps[which].ethtool)
        json_str(f, snaps[which].ethtool);
    else
        fputs("null", f);
    fputc('}', f);
}

static void maybe_str(FILE *f, const char *s)
{
    if (s[0])
        json_str(f, s);
    else
        fputs("null", f);
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
    fputs(", \"nic\": ", f);
    maybe_str(f, nic);
    fputs(", \"nic_bus\": ", f);
    maybe_str(f, nic_bus);
    fputc('}', f);
}

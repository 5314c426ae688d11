/* Command-line parsing into struct config; every rejected value exits with status 2. A system
 * failure before the run starts (no memory, no socket, no thread) exits with status 3. */
#include "args.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const mode_names[] = {"two_copy", "one_copy", "zero_copy", "sendfile",
                                         "io_uring", "io_uring_zc"};
static const char *const workload_names[] = {"stream", "rr"};
static const char *const role_names[] = {"server", "client"};
static const char *const receive_names[] = {"copy", "zerocopy"};
static const char *const uring_buffer_names[] = {"plain", "registered"};

const char *mode_name(enum mode m) { return mode_names[m]; }
const char *workload_name(enum workload w) { return workload_names[w]; }
const char *role_name(enum role r) { return role_names[r]; }
const char *receive_name(enum receive_mode r) { return receive_names[r]; }
const char *uring_buffers_name(int registered) { return uring_buffer_names[registered ? 1 : 0]; }

static void say(const char *fmt, va_list ap)
{
    fputs("agent: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    exit(AGENT_EXIT_USAGE);
}

void system_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(fmt, ap);
    va_end(ap);
    exit(AGENT_EXIT_SYSTEM);
}

static int lookup(const char *const *names, int n, const char *s, const char *opt)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return i;
    usage_error("unknown value '%s' for %s", s, opt);
}

/* strtoull accepts "-1" and leading blanks; a byte count must be plain digits. */
static uint64_t parse_uint(const char *s, const char *opt, uint64_t lo, uint64_t hi)
{
    char *end;
    if (*s < '0' || *s > '9')
        usage_error("%s needs a whole number, got '%s'", opt, s);
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        usage_error("%s needs a whole number, got '%s'", opt, s);
    if (v < lo || v > hi)
        usage_error("%s must be between %llu and %llu, got '%s'", opt,
                    (unsigned long long)lo, (unsigned long long)hi, s);
    return v;
}

static double parse_seconds(const char *s, const char *opt, int allow_zero)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        usage_error("%s needs a number of seconds, got '%s'", opt, s);
    if (v < 0 || (!allow_zero && v == 0))
        usage_error("%s must be %s, got '%s'", opt, allow_zero ? ">= 0" : "> 0", s);
    if (v > 1e6)
        usage_error("%s must be at most 1000000 seconds, got '%s'", opt, s);
    return v;
}

/* "0,2-3" -> {0,2,3}; each CPU must be one this process may run on. */
static void parse_cpus(const char *s, struct config *cfg)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        system_error("cannot read the CPU affinity: %s", strerror(errno));
    char buf[1024];
    if (strlen(s) >= sizeof buf || *s == '\0')
        usage_error("--cpus: bad list '%s'", s);
    strcpy(buf, s);
    char *save = NULL;
    cfg->ncpus = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(tok, '-');
        uint64_t a, b;
        if (dash) {
            *dash = '\0';
            a = parse_uint(tok, "--cpus", 0, CPU_SETSIZE - 1);
            b = parse_uint(dash + 1, "--cpus", 0, CPU_SETSIZE - 1);
            if (b < a)
                usage_error("--cpus: bad range in '%s'", s);
        } else {
            a = b = parse_uint(tok, "--cpus", 0, CPU_SETSIZE - 1);
        }
        for (uint64_t c = a; c <= b; c++) {
            if (!CPU_ISSET((int)c, &allowed))
                usage_error("--cpus: CPU %llu is not available to this process",
                            (unsigned long long)c);
            if (cfg->ncpus >= (int)(sizeof cfg->cpus / sizeof cfg->cpus[0]))
                usage_error("--cpus: too many CPUs in '%s'", s);
            cfg->cpus[cfg->ncpus++] = (int)c;
        }
    }
    if (cfg->ncpus == 0)
        usage_error("--cpus: bad list '%s'", s);
}

enum {
    OPT_BIND = 1000, OPT_CONNECT, OPT_PORT, OPT_MODE, OPT_WORKLOAD, OPT_SIZE, OPT_FIELDS,
    OPT_THREADS, OPT_DURATION, OPT_WARMUP, OPT_INTERVAL, OPT_SENDER, OPT_NODELAY, OPT_SNDBUF,
    OPT_RCVBUF, OPT_CPUS, OPT_VERIFY, OPT_OUTPUT, OPT_LIFETIME, OPT_RECEIVE, OPT_URING_BUFFERS,
};

static const struct option long_opts[] = {
    {"bind", required_argument, 0, OPT_BIND},
    {"connect", required_argument, 0, OPT_CONNECT},
    {"port", required_argument, 0, OPT_PORT},
    {"mode", required_argument, 0, OPT_MODE},
    {"workload", required_argument, 0, OPT_WORKLOAD},
    {"size", required_argument, 0, OPT_SIZE},
    {"fields", required_argument, 0, OPT_FIELDS},
    {"threads", required_argument, 0, OPT_THREADS},
    {"duration", required_argument, 0, OPT_DURATION},
    {"warmup", required_argument, 0, OPT_WARMUP},
    {"interval", required_argument, 0, OPT_INTERVAL},
    {"sender", required_argument, 0, OPT_SENDER},
    {"nodelay", required_argument, 0, OPT_NODELAY},
    {"sndbuf", required_argument, 0, OPT_SNDBUF},
    {"rcvbuf", required_argument, 0, OPT_RCVBUF},
    {"cpus", required_argument, 0, OPT_CPUS},
    {"verify", no_argument, 0, OPT_VERIFY},
    {"output", required_argument, 0, OPT_OUTPUT},
    {"lifetime", required_argument, 0, OPT_LIFETIME},
    {"receive", required_argument, 0, OPT_RECEIVE},
    {"uring-buffers", required_argument, 0, OPT_URING_BUFFERS},
    {0, 0, 0, 0},
};

void parse_args(int argc, char **argv, struct config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->mode = MODE_ONE_COPY;
    cfg->workload = WL_STREAM;
    cfg->size = 65536;
    cfg->fields = 8;
    cfg->threads = 1;
    cfg->duration = 10;
    cfg->warmup = 0;
    cfg->interval = 1;
    cfg->sender = ROLE_SERVER;
    cfg->nodelay = 1;
    cfg->lifetime = -1;

    if (argc < 2)
        usage_error("usage: agent server --bind ADDR --port PORT [options] | "
                    "agent client --connect ADDR --port PORT [options]");
    cfg->role = (enum role)lookup(role_names, 2, argv[1], "the role");

    const char *bind = NULL, *connect = NULL, *port = NULL;
    opterr = 0;
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (c) {
        case OPT_BIND: bind = optarg; break;
        case OPT_CONNECT: connect = optarg; break;
        case OPT_PORT: port = optarg; break;
        case OPT_MODE: cfg->mode = (enum mode)lookup(mode_names, 6, optarg, "--mode"); break;
        case OPT_WORKLOAD:
            cfg->workload = (enum workload)lookup(workload_names, 2, optarg, "--workload");
            break;
        case OPT_SIZE: cfg->size = (uint32_t)parse_uint(optarg, "--size", 1, AGENT_MAX_SIZE); break;
        case OPT_FIELDS:
            cfg->fields = (uint32_t)parse_uint(optarg, "--fields", 1, AGENT_MAX_FIELDS);
            break;
        case OPT_THREADS:
            cfg->threads = (uint32_t)parse_uint(optarg, "--threads", 1, AGENT_MAX_THREADS);
            break;
        case OPT_DURATION: cfg->duration = parse_seconds(optarg, "--duration", 0); break;
        case OPT_WARMUP: cfg->warmup = parse_seconds(optarg, "--warmup", 1); break;
        case OPT_INTERVAL: cfg->interval = parse_seconds(optarg, "--interval", 0); break;
        case OPT_SENDER: cfg->sender = (enum role)lookup(role_names, 2, optarg, "--sender"); break;
        case OPT_NODELAY: cfg->nodelay = (int)parse_uint(optarg, "--nodelay", 0, 1); break;
        case OPT_SNDBUF: cfg->sndbuf = (int)parse_uint(optarg, "--sndbuf", 0, 1u << 30); break;
        case OPT_RCVBUF: cfg->rcvbuf = (int)parse_uint(optarg, "--rcvbuf", 0, 1u << 30); break;
        case OPT_CPUS: parse_cpus(optarg, cfg); break;
        case OPT_VERIFY: cfg->verify = 1; break;
        case OPT_OUTPUT: cfg->output = optarg; break;
        case OPT_LIFETIME: cfg->lifetime = parse_seconds(optarg, "--lifetime", 0); break;
        case OPT_RECEIVE:
            cfg->receive = (enum receive_mode)lookup(receive_names, 2, optarg, "--receive");
            break;
        case OPT_URING_BUFFERS:
            cfg->uring_registered = lookup(uring_buffer_names, 2, optarg, "--uring-buffers");
            break;
        case ':':
            usage_error("option %s needs a value", argv[optind - 1]);
        default:
            usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument '%s'", argv[optind]);

    if (cfg->role == ROLE_SERVER) {
        if (!bind)
            usage_error("server needs --bind ADDR");
        if (connect)
            usage_error("--connect is for the client");
        snprintf(cfg->addr, sizeof cfg->addr, "%s", bind);
    } else {
        if (!connect)
            usage_error("client needs --connect ADDR");
        if (bind)
            usage_error("--bind is for the server");
        snprintf(cfg->addr, sizeof cfg->addr, "%s", connect);
    }
    if (strlen(cfg->role == ROLE_SERVER ? bind : connect) >= sizeof cfg->addr)
        usage_error("address too long");
    if (!port)
        usage_error("--port is required");
    uint64_t p = parse_uint(port, "--port", cfg->role == ROLE_SERVER ? 0 : 1, 65535);
    snprintf(cfg->port_str, sizeof cfg->port_str, "%llu", (unsigned long long)p);

    /* Mapped pages suit a stream's receiver; an rr side reads one message at a time. */
    if (cfg->receive == RX_ZEROCOPY && cfg->workload != WL_STREAM)
        usage_error("--receive zerocopy needs --workload stream");

    /* The kernel takes registered buffers for zero-copy sends only (IORING_RECVSEND_FIXED_BUF). */
    if (cfg->uring_registered && cfg->mode != MODE_IO_URING_ZC)
        usage_error("--uring-buffers registered needs --mode io_uring_zc (the kernel registers "
                    "buffers for IORING_OP_SEND_ZC only)");

    /* A field holds at least one byte, so a message cannot have more fields than bytes. */
    if (cfg->fields > cfg->size)
        cfg->fields = cfg->size;

    double n = ceil(cfg->duration / cfg->interval - 1e-9);
    if (n < 1)
        n = 1;
    if (n > AGENT_MAX_INTERVALS)
        usage_error("--duration / --interval gives more than %d intervals", AGENT_MAX_INTERVALS);
    cfg->n_intervals = (uint32_t)n;
    if (cfg->lifetime < 0)
        cfg->lifetime = cfg->duration + cfg->warmup + 30;
}

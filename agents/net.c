#include "net.h"

#include "agent.h"
#include "args.h"
#include "control.h"
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELLO_MAGIC 0x4f414731u /* "OAG1" */
#define HELLO_LEN 64
#define ACK_LEN 256

struct hello {
    uint32_t magic, index, size, fields, threads;
    uint8_t mode, workload, sender, verify;
    uint64_t duration_us, warmup_us, interval_us;
};

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)(v >> 32));
    put32(p + 4, (uint32_t)v);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static uint64_t to_us(double s)
{
    return (uint64_t)(s * 1e6 + 0.5);
}

static struct hello hello_of(const struct config *cfg, uint32_t index)
{
    struct hello h = {
        .magic = HELLO_MAGIC, .index = index, .size = cfg->size, .fields = cfg->fields,
        .threads = cfg->threads, .mode = (uint8_t)cfg->mode,
        .workload = (uint8_t)cfg->workload, .sender = (uint8_t)cfg->sender,
        .verify = (uint8_t)cfg->verify, .duration_us = to_us(cfg->duration),
        .warmup_us = to_us(cfg->warmup), .interval_us = to_us(cfg->interval),
    };
    return h;
}

static void hello_encode(const struct hello *h, uint8_t *b)
{
    memset(b, 0, HELLO_LEN);
    put32(b, h->magic);
    put32(b + 4, h->index);
    put32(b + 8, h->size);
    put32(b + 12, h->fields);
    put32(b + 16, h->threads);
    b[20] = h->mode;
    b[21] = h->workload;
    b[22] = h->sender;
    b[23] = h->verify;
    put64(b + 24, h->duration_us);
    put64(b + 32, h->warmup_us);
    put64(b + 40, h->interval_us);
}

static void hello_decode(const uint8_t *b, struct hello *h)
{
    h->magic = get32(b);
    h->index = get32(b + 4);
    h->size = get32(b + 8);
    h->fields = get32(b + 12);
    h->threads = get32(b + 16);
    h->mode = b[20];
    h->workload = b[21];
    h->sender = b[22];
    h->verify = b[23];
    h->duration_us = get64(b + 24);
    h->warmup_us = get64(b + 32);
    h->interval_us = get64(b + 40);
}

/* Empty when they agree, else what differs, worded for a person. */
static void hello_diff(const struct hello *mine, const struct hello *theirs, char *out, size_t len)
{
    out[0] = '\0';
#define DIFF(field, name)                                                                  \
    if (mine->field != theirs->field) {                                                   \
        snprintf(out, len, "client and server disagree on %s: client %llu, server %llu", \
                 name, (unsigned long long)theirs->field, (unsigned long long)mine->field); \
        return;                                                                           \
    }
    DIFF(mode, "--mode (0 two_copy, 1 one_copy, 2 zero_copy, 3 sendfile, 4 io_uring, 5 io_uring_zc)")
    DIFF(workload, "--workload (0 stream, 1 rr)")
    DIFF(size, "--size")
    DIFF(fields, "--fields")
    DIFF(threads, "--threads")
    DIFF(sender, "--sender (0 server, 1 client)")
    DIFF(verify, "--verify")
    DIFF(duration_us, "--duration (microseconds)")
    DIFF(warmup_us, "--warmup (microseconds)")
    DIFF(interval_us, "--interval (microseconds)")
#undef DIFF
}

int send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = send(fd, p, len, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        len -= (size_t)r;
    }
    return 1;
}

int recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t r = recv(fd, p + got, len - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            if (got == 0)
                return 0;
            errno = EPROTO;
            return -1;
        }
        got += (size_t)r;
    }
    return 1;
}

static int set_int(int fd, int level, int opt, int v, const char *name)
{
    if (setsockopt(fd, level, opt, &v, sizeof v) != 0) {
        agent_fail("setsockopt %s=%d: %s", name, v, strerror(errno));
        return -1;
    }
    return 0;
}

/* Buffer sizes go on the socket before connect/listen so the window scale reflects them. */
static int set_buffers(int fd, const struct config *cfg)
{
    if (cfg->sndbuf && set_int(fd, SOL_SOCKET, SO_SNDBUF, cfg->sndbuf, "SO_SNDBUF"))
        return -1;
    if (cfg->rcvbuf && set_int(fd, SOL_SOCKET, SO_RCVBUF, cfg->rcvbuf, "SO_RCVBUF"))
        return -1;
    return 0;
}

static int set_nodelay(int fd, const struct config *cfg)
{
    return set_int(fd, IPPROTO_TCP, TCP_NODELAY, cfg->nodelay, "TCP_NODELAY");
}

static void name_of(const struct sockaddr_storage *ss, socklen_t sl, char *out, size_t len,
                    int with_port)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo((const struct sockaddr *)ss, sl, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, len, "?");
        return;
    }
    if (!with_port)
        snprintf(out, len, "%s", host);
    else if (ss->ss_family == AF_INET6)
        snprintf(out, len, "[%s]:%s", host, serv);
    else
        snprintf(out, len, "%s:%s", host, serv);
}

void net_names(int fd, char *local, char *peer, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        name_of(&ss, sl, local, len, 1);
    else
        snprintf(local, len, "?");
    sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        name_of(&ss, sl, peer, len, 1);
    else
        snprintf(peer, len, "?");
}

struct addrinfo *net_resolve(const struct config *cfg, int passive)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* Numeric addresses only: no name service, so a static build needs no NSS at run time. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    int rc = getaddrinfo(cfg->addr, cfg->port_str, &hints, &res);
    if (rc != 0)
        usage_error("cannot resolve '%s': %s", cfg->addr, gai_strerror(rc));
    return res;
}

int net_listen(const struct config *cfg, char *addr, size_t addrlen, int *port)
{
    struct addrinfo *res = net_resolve(cfg, 1);
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    if (fd < 0)
        system_error("socket: %s", strerror(errno));
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        system_error("setsockopt SO_REUSEADDR: %s", strerror(errno));
    if (cfg->sndbuf && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cfg->sndbuf, sizeof(int)) != 0)
        usage_error("setsockopt SO_SNDBUF=%d: %s", cfg->sndbuf, strerror(errno));
    if (cfg->rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cfg->rcvbuf, sizeof(int)) != 0)
        usage_error("setsockopt SO_RCVBUF=%d: %s", cfg->rcvbuf, strerror(errno));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        int e = errno;
        if (e == EADDRINUSE)
            usage_error("cannot listen on %s port %s: the port is in use", cfg->addr,
                        cfg->port_str);
        if (e == EADDRNOTAVAIL)
            usage_error("cannot listen on %s: not an address of this host", cfg->addr);
        usage_error("cannot bind %s port %s: %s", cfg->addr, cfg->port_str, strerror(e));
    }
    freeaddrinfo(res);
    if (listen(fd, AGENT_MAX_THREADS * 2) != 0)
        system_error("listen: %s", strerror(errno));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        system_error("getsockname: %s", strerror(errno));
    name_of(&ss, sl, addr, addrlen, 0);
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void refuse(int fd, const char *why)
{
    uint8_t ack[ACK_LEN];
    memset(ack, 0, sizeof ack);
    ack[0] = 1;
    snprintf((char *)ack + 1, ACK_LEN - 1, "%s", why);
    (void)send_all(fd, ack, sizeof ack); /* best effort: the client may be gone already */
}

int net_accept_all(int lfd)
{
    const struct config *cfg = &g_run.cfg;
    for (uint32_t n = 0; n < cfg->threads; n++) {
        int fd;
        do
            fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        while (fd < 0 && errno == EINTR && !agent_aborted());
        if (fd < 0) {
            if (!agent_aborted())
                agent_fail("accept: %s", strerror(errno));
            return -1;
        }
        agent_register_fd(fd);
        uint8_t b[HELLO_LEN];
        int r = recv_all(fd, b, sizeof b);
        if (r != 1) {
            if (!agent_aborted())
                agent_fail("connection %u: no hello from the client (%s)", n,
                           r == 0 ? "closed" : strerror(errno));
            close(fd);
            return -1;
        }
        struct hello theirs, mine;
        hello_decode(b, &theirs);
        mine = hello_of(cfg, theirs.index);
        char why[300];
        if (theirs.magic != HELLO_MAGIC)
            snprintf(why, sizeof why, "the peer is not an orchestrate agent of this version");
        else if (theirs.index >= cfg->threads || g_run.th[theirs.index].fd >= 0)
            snprintf(why, sizeof why, "bad or repeated connection index %u", theirs.index);
        else
            hello_diff(&mine, &theirs, why, sizeof why);
        if (why[0]) {
            /* Tell every connection: the client reads its answers in connection order. */
            for (uint32_t i = 0; i < cfg->threads; i++)
                if (g_run.th[i].fd >= 0)
                    refuse(g_run.th[i].fd, why);
            refuse(fd, why);
            agent_fail("refused the client: %s", why);
            close(fd);
            return -1;
        }
        if (set_nodelay(fd, cfg) != 0) {
            close(fd);
            return -1;
        }
        g_run.th[theirs.index].fd = fd;
    }
    uint8_t ack[ACK_LEN];
    memset(ack, 0, sizeof ack);
    for (uint32_t i = 0; i < cfg->threads; i++)
        if (send_all(g_run.th[i].fd, ack, sizeof ack) != 1) {
            agent_fail("connection %u: sending the start acknowledgement: %s", i,
                       strerror(errno));
            return -1;
        }
    return 0;
}

/* Non-blocking connect so that an abort (signal, lifetime) is noticed while it waits. */
static int connect_one(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                    ai->ai_protocol);
    if (fd < 0) {
        agent_fail("socket: %s", strerror(errno));
        return -1;
    }
    if (set_buffers(fd, &g_run.cfg) != 0 || set_nodelay(fd, &g_run.cfg) != 0) {
        close(fd);
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
        agent_fail("cannot connect to %s port %s: %s", g_run.cfg.addr, g_run.cfg.port_str,
                   strerror(errno));
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, 100);
        if (agent_aborted()) {
            close(fd);
            return -1;
        }
        if (r < 0 && errno != EINTR) {
            agent_fail("poll during connect: %s", strerror(errno));
            close(fd);
            return -1;
        }
        if (r > 0)
            break;
    }
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        agent_fail("cannot connect to %s port %s: %s", g_run.cfg.addr, g_run.cfg.port_str,
                   strerror(err ? err : errno));
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        agent_fail("fcntl: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int net_connect_all(struct addrinfo *res)
{
    const struct config *cfg = &g_run.cfg;
    for (uint32_t i = 0; i < cfg->threads; i++) {
        int fd = connect_one(res);
        if (fd < 0) {
            freeaddrinfo(res);
            return -1;
        }
        agent_register_fd(fd);
        g_run.th[i].fd = fd;
        uint8_t b[HELLO_LEN];
        struct hello h = hello_of(cfg, i);
        hello_encode(&h, b);
        if (send_all(fd, b, sizeof b) != 1) {
            freeaddrinfo(res);
            if (!agent_aborted())
                agent_fail("connection %u: sending the hello: %s", i, strerror(errno));
            return -1;
        }
    }
    freeaddrinfo(res);
    for (uint32_t i = 0; i < cfg->threads; i++) {
        uint8_t ack[ACK_LEN];
        int r = recv_all(g_run.th[i].fd, ack, sizeof ack);
        if (r != 1) {
            if (!agent_aborted())
                agent_fail("connection %u: the server closed the connection before the start "
                           "(%s)", i, r == 0 ? "no answer to the hello" : strerror(errno));
            return -1;
        }
        if (ack[0] != 0) {
            ack[ACK_LEN - 1] = '\0';
            agent_fail("the server refused the run: %s", (char *)ack + 1);
            return -1;
        }
    }
    return 0;
}

/* Sockets: listening, connecting, the hello/ack handshake and socket options. */
#ifndef NET_H
#define NET_H

#include "agent.h"

#include <netdb.h>
#include <stddef.h>

/* Binds and listens; exits with status 2 when the address or port cannot be used.
 * Writes the bound numeric address and port for the READY line. */
int net_listen(const struct config *cfg, char *addr, size_t addrlen, int *port);
/* Accepts cfg->threads connections, checks each hello, acknowledges them all.
 * Fills g_run.th[i].fd by the client's thread index. 0, or -1 with the run failed. */
int net_accept_all(int lfd);
/* The address to listen on or connect to; exits with status 2 when it does not resolve. */
struct addrinfo *net_resolve(const struct config *cfg, int passive);
/* Connects cfg->threads times to `res` (freed here), sends the hellos and waits for the
 * server's answers. */
int net_connect_all(struct addrinfo *res);
/* "addr:port" of both ends of a connected socket. */
void net_names(int fd, char *local, char *peer, size_t len);
/* Blocking full-length transfers for control data: 1 done, 0 EOF before the first byte,
 * -1 error (EOF part-way is an error; nothing is recorded, the caller words it). */
int send_all(int fd, const void *buf, size_t len);
int recv_all(int fd, void *buf, size_t len);

#endif

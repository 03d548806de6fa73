/* LD_PRELOAD shim for perfdhcp: give every UDP socket it opens a large receive buffer.
 *
 * perfdhcp 2.2 never sets SO_RCVBUF, so its socket gets net.core.rmem_default (208 KiB, ~160 replies):
 * at 10,000 DORA/s on a 2-core machine a scheduling hiccup of ~8 ms in its receiver thread overflows it
 * and the replies the server did send count as drops (visible as UdpRcvbufErrors in the client
 * namespace). That limit is global to the host (the sysctl is read-only inside a network namespace), so
 * the lab raises it for perfdhcp alone. XD_RCVBUF_BYTES sets the size (default 16 MiB); SO_RCVBUFFORCE
 * needs CAP_NET_ADMIN, which the lab has (it runs as root).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>

int socket(int domain, int type, int protocol) {
    static int (*real_socket)(int, int, int);
    if (!real_socket) {
        real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
        if (!real_socket) {
            return -1;
        }
    }
    int fd = real_socket(domain, type, protocol);
    if (fd >= 0 && (domain == AF_INET || domain == AF_INET6) && (type & 0xf) == SOCK_DGRAM) {
        const char *env = getenv("XD_RCVBUF_BYTES");
        int bytes = env ? atoi(env) : 16 << 20;
        if (bytes > 0) {
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes);
        }
    }
    return fd;
}

#pragma once
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <errno.h>

/* `struct ucred` is only declared under _GNU_SOURCE, which the Swift Glibc module does not
 * expose, so peer credentials come through this mirror of the kernel layout (pid, uid, gid). */
typedef struct slmd_peer_credentials {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} slmd_peer_credentials;

/* getsockopt(SO_PEERCRED) on a connected AF_UNIX socket. Returns 0, or -errno. */
static inline int slmd_get_peer_credentials(int fd, slmd_peer_credentials *out) {
    socklen_t len = sizeof(*out);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, out, &len) != 0) return -errno;
    if (len != sizeof(*out)) return -EINVAL;
    return 0;
}

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 /* Linux 4.13; older libc headers lack the name */
#endif

/* getsockopt(SO_PEERGROUPS): the peer's supplementary groups as of connect(), into
 * out[0..<capacity]. Returns the count, or -errno (-ERANGE when capacity is too small). */
static inline int slmd_get_peer_groups(int fd, gid_t *out, int capacity) {
    socklen_t len = (socklen_t)(capacity * (int)sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, out, &len) != 0) return -errno;
    return (int)(len / sizeof(gid_t));
}

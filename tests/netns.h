/* netns.h — a test's own network namespace with its loopback up, so that
 * its ports and its fake camera's GigE Vision traffic never meet another
 * test's or the host's.  Header-only, for tests/test_*.c. */
#ifndef MAA_TEST_NETNS_H
#define MAA_TEST_NETNS_H

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int netns_write(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Moves the process into a new network namespace (as root; otherwise in a
 * user namespace of its own too) and brings its loopback up.  Call before
 * any thread starts: unshare refuses a threaded process.  Leaves skip
 * empty on success, else why (the tests that need the network skip). */
static inline void netns_enter(char *skip, size_t n)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    skip[0] = '\0';
    if (unshare(CLONE_NEWNET) != 0) {
        int e1 = errno;
        char map[64];
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
            snprintf(skip, n, "no private network namespace: unshare(NEWNET): %s, with NEWUSER: %s",
                     strerror(e1), strerror(errno));
            return;
        }
        netns_write("/proc/self/setgroups", "deny");
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        netns_write("/proc/self/uid_map", map);
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        netns_write("/proc/self/gid_map", map);
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != 0 ||
        (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) != 0))
        snprintf(skip, n, "cannot bring lo up: %s", strerror(errno));
    if (fd >= 0)
        close(fd);
}

#endif

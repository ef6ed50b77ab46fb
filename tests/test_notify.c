/* test_notify.c — the sd_notify wrapper against a NOTIFY_SOCKET of our own:
 * an AF_UNIX datagram socket in a temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/check.h"

static char dir[64], path[96];
static int fd = -1;

/* The next datagram, or "" after 2 s. */
static const char *next(void)
{
    static char buf[1024];
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    return buf;
}

static void test_no_socket(void)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK(maad_notify_ready() == 0);
    CHECK(maad_notify_status("x %d", 1) == 0);
    CHECK(maad_notify_watchdog() == 0);
    CHECK(maad_notify_stopping() == 0);
}

static void test_messages(void)
{
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK(maad_notify_ready() > 0);
    CHECK(strcmp(next(), "READY=1") == 0);
    CHECK(maad_notify_status("inspecting cam0: %d fps, %s", 30, "ok") > 0);
    const char *m = next();
    CHECK(strcmp(m, "STATUS=inspecting cam0: 30 fps, ok") == 0, "%s", m);
    CHECK(maad_notify_status("two\nlines") > 0);
    m = next();
    CHECK(strcmp(m, "STATUS=two lines") == 0, "%s", m);
    CHECK(maad_notify_watchdog() > 0);
    CHECK(strcmp(next(), "WATCHDOG=1") == 0);
    CHECK(maad_notify_stopping() > 0);
    CHECK(strcmp(next(), "STOPPING=1") == 0);
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog_interval(void)
{
    char pid[32];
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK(maad_notify_watchdog_usec() == 0);
    setenv("WATCHDOG_USEC", "2500000", 1);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(maad_notify_watchdog_usec() == 2500000);
    /* Meant for another process (a parent that did not unset it). */
    snprintf(pid, sizeof pid, "%d", (int)getppid());
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(maad_notify_watchdog_usec() == 0);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_notify.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/notify", dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror(path);
        return 1;
    }
    RUN(test_no_socket);
    RUN(test_messages);
    RUN(test_watchdog_interval);
    close(fd);
    unlink(path);
    rmdir(dir);
    return CHECK_SUMMARY();
}

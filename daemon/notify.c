/* notify.c — the service manager protocol (sd_notify) behind one small
 * wrapper, as redis does: READY once serving, STATUS for `systemctl status`,
 * WATCHDOG pings, STOPPING on the way out.  sd_notify itself is a no-op
 * without NOTIFY_SOCKET, so a daemon started by hand needs no special case. */
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "daemon/daemon.h"

int maad_notify_ready(void)
{
    return sd_notify(0, "READY=1");
}

int maad_notify_status(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* A newline would start another assignment in the datagram. */
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
    return sd_notifyf(0, "STATUS=%s", msg);
}

int maad_notify_watchdog(void)
{
    return sd_notify(0, "WATCHDOG=1");
}

int maad_notify_stopping(void)
{
    return sd_notify(0, "STOPPING=1");
}

uint64_t maad_notify_watchdog_usec(void)
{
    uint64_t usec = 0;
    return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

/* helper_modbus_plc.c — a fast simulated PLC for scripts/bench-plc.py:
 * libmodbus's Modbus TCP server, and as "PLC program" the handshake of
 * docs/plc.md (a new counter in R+0 is taken at once: its part number and
 * decision appended to OUT as a JSON line, R+0 copied to R+6).  One client
 * at a time, as maa-plc connects; a new one after it leaves.  Python's
 * pymodbus (scripts/plc-sim.py) answers in a quarter of a millisecond
 * with a longer tail; this one in microseconds, so the benchmark times the
 * bridge rather than the simulator.
 *
 *   helper_modbus_plc PORT MAILBOX OUT    prints "listening on 127.0.0.1:PORT" */
#include <errno.h>
#include <modbus.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: helper_modbus_plc PORT MAILBOX OUT\n");
        return 2;
    }
    int port = atoi(argv[1]), r = atoi(argv[2]);
    FILE *out = fopen(argv[3], "a");
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_mapping_t *map = modbus_mapping_new(16, 0, r + 16, 0);
    if (!out || !ctx || !map) {
        fprintf(stderr, "helper_modbus_plc: %s\n", out ? modbus_strerror(errno) : argv[3]);
        return 1;
    }
    int server = modbus_tcp_listen(ctx, 1);
    if (server < 0) {
        fprintf(stderr, "helper_modbus_plc: cannot listen on port %d: %s\n", port,
                modbus_strerror(errno));
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("listening on 127.0.0.1:%d\n", port);
    fflush(stdout);
    uint16_t *reg = map->tab_registers + r;
    while (!stop) {
        if (modbus_tcp_accept(ctx, &server) < 0)
            break; /* interrupted by the signal */
        uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
        int n;
        while (!stop && (n = modbus_receive(ctx, q)) >= 0) {
            if (n == 0)
                continue; /* a request for another unit */
            modbus_reply(ctx, q, n, map);
            if (reg[0] != 0 && reg[0] != reg[6]) {
                fprintf(out, "{\"counter\": %u, \"part\": %lu, \"decision\": %u, "
                        "\"reasons\": %u, \"cameras\": %u}\n", reg[0],
                        (unsigned long)reg[1] << 16 | reg[2], reg[3], reg[4], reg[5]);
                fflush(out);
                reg[6] = reg[0];
            }
        }
        modbus_close(ctx);
    }
    close(server);
    modbus_mapping_free(map);
    modbus_free(ctx);
    fclose(out);
    return 0;
}

/* bench_publish.c — what publishing a verdict costs the worker with a PNG
 * mask (the default): maad_pub_verdict on an empty mask (a good part: the
 * cached PNG) and on a mask with a defect, against maa_png_encode alone (what
 * every verdict paid before the empty mask was cached), in one run, S x S
 * masks.  No subscriber: ZeroMQ drops the message, the cost measured is the
 * publisher's.  The numbers in docs/protocol.md come from this program.  Not
 * a test: tests/run.sh runs only test_* programs.
 *
 *   bench_publish [S [SECONDS]]     default 256, 1 s per measurement */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "tests/bench.h"

/* Microseconds per call of publish(mask) over about `seconds`. */
static double per_call(maad_pub *p, const uint8_t *mask, int s, int encode_only,
                       double seconds)
{
    char err[MAA_ERRLEN];
    maad_verdict v = {.frame_id = 1, .verdict = MAAD_PASS, .score = 1, .threshold = 2,
                      .model = "5d4dc4a16543cd125fe9fb0e2df70cc1e97eb8c4a3055d53d39e2ebd593ea5e1",
                      .model_size = s, .mask = mask};
    long n = 0;
    const double t0 = bench_now();
    double t = t0;
    for (; t - t0 < seconds; n++) {
        if (encode_only) {
            void *png;
            size_t len;
            if (maa_png_encode(mask, s, s, 1, &png, &len, err, sizeof err)) {
                fprintf(stderr, "bench_publish: %s\n", err);
                exit(1);
            }
            free(png);
        } else if (maad_pub_verdict(p, &v, err, sizeof err)) {
            fprintf(stderr, "bench_publish: %s\n", err);
            exit(1);
        }
        if (n % 16 == 0)
            t = bench_now();
    }
    return (bench_now() - t0) * 1e6 / n;
}

int main(int argc, char **argv)
{
    int s;
    double seconds;
    if (bench_args(argc, argv, "S", 256, 8, 4096, &s, &seconds))
        return 2;
    char ep[96], err[MAA_ERRLEN];
    snprintf(ep, sizeof ep, "ipc:///tmp/bench_publish.%d", (int)getpid());
    maad_pub_opts o = {.endpoint = ep, .camera = "bench", .sndhwm = 1000,
                       .mask_format = MAAD_MASK_PNG, .heartbeat_ms = 1000};
    maad_pub *p;
    if (maad_pub_create(&o, &p, err, sizeof err)) {
        fprintf(stderr, "bench_publish: %s\n", err);
        return 1;
    }
    uint8_t *empty = calloc((size_t)s * s, 1), *defect = calloc((size_t)s * s, 1);
    for (int y = s / 3; y < s / 3 + 6; y++)
        memset(defect + (size_t)y * s + s / 4, 255, (size_t)s / 2);
    const double enc = per_call(p, empty, s, 1, seconds);
    const double pub_empty = per_call(p, empty, s, 0, seconds);
    const double pub_defect = per_call(p, defect, s, 0, seconds);
    printf("S=%d PNG masks, us per verdict: maa_png_encode alone %.1f; maad_pub_verdict "
           "empty mask %.1f (%.1fx less), mask with a defect %.1f\n", s, enc, pub_empty,
           enc / pub_empty, pub_defect);
    free(empty);
    free(defect);
    maad_pub_free(p);
    return 0;
}

/* fuzz_watch.c — the verdicts and heartbeats `maa watch` reads from a
 * publisher (maa/watch.c on_message): the JSON, the fields it prints and
 * the seq and heartbeat bookkeeping it keeps per camera.  The input holds
 * messages one a line (tests/fuzz/fuzz.h fuzz_messages), fed to one watcher
 * in turn with a second between them, in each output mode: a line per
 * verdict, --json, and --passes count in a pipe and on a terminal.
 *
 * watch.c is included, not linked: its state and on_message are private to
 * the subcommand, and this is the one other place that needs them. */
#include "maa/watch.c"
#include "tests/fuzz/fuzz.h"

/* Verdict lines go to stdout (notes go to fuzz_null below): they would bury
 * the fuzzer's own output. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!freopen("/dev/null", "w", stdout)) {
        perror("fuzz_watch: /dev/null");
        abort();
    }
    return 0;
}

typedef struct {
    watch *w;
    uint64_t now;
} feed;

static void message(void *user, const uint8_t *topic, size_t topic_len, const uint8_t *json,
                    size_t json_len)
{
    feed *f = user;
    /* As recv_message gives them: the topic cut to its buffer (and at a
     * NUL), the JSON NUL-terminated. */
    char tp[256];
    snprintf(tp, sizeof tp, "%.*s", (int)topic_len, (const char *)topic);
    char *js = json ? fuzz_copy(json, json_len, 1) : NULL;
    f->now += 1000000000u;
    on_message(f->w, tp, js, json_len, f->now);
    check_heartbeats(f->w, f->now, 0);
    free(js);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct {
        int json, count_passes, live;
    } modes[] = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {0, 1, 1}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        watch w = {.json = modes[i].json,
                   .topic = "maad.",
                   .notes = fuzz_null(),
                   .count_passes = modes[i].count_passes,
                   .live = modes[i].live};
        feed f = {.w = &w};
        fuzz_messages(data, size, message, &f);
        summary(&w);
    }
    return 0;
}

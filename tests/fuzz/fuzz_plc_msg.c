/* fuzz_plc_msg.c — a maad message as the PLC bridge reads it (plc/plc.h
 * plc_msg_parse): the topic, the JSON and every field the bridge acts on.
 * The input holds messages one a line (tests/fuzz/fuzz.h fuzz_messages);
 * each part is handed over in a block of its own exact size, as ZeroMQ
 * hands maa-plc a part, neither NUL-terminated. */
#include "plc/plc.h"
#include "tests/fuzz/fuzz.h"

static void message(void *user, const uint8_t *topic, size_t topic_len, const uint8_t *json,
                    size_t json_len)
{
    (void)user;
    /* maa-plc refuses a message of one part before parsing it. */
    if (!json)
        return;
    char *t = fuzz_copy(topic, topic_len, 0), *j = fuzz_copy(json, json_len, 0);
    plc_msg m;
    char err[256];
    plc_msg_parse(t, topic_len, j, json_len, &m, err, sizeof err);
    free(t);
    free(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_messages(data, size, message, NULL);
    return 0;
}

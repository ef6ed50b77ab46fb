/* test_plc_config.c — maa-plc's configuration file, read by maad's loader:
 * every error of the cameras list and of the bridge's rules with its exact
 * FILE:LINE:COL, the loader's common errors as maa-plc meets them, defaults,
 * a full file and its dump, and the committed example file and docs table
 * against the key table.  Run from the repository root (tests/run.sh does). */
#include "config/config.h"

#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "tests/check.h"
#include "tests/config_files.h"

static char *dump(const maa_plc_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    maa_plc_config_dump(c, m);
    fclose(m);
    return buf;
}

static int load(const char *text, maa_plc_config *c, char *err, size_t errlen)
{
    return maa_plc_config_load(write_file("plc.yaml", text, strlen(text)), c, err, errlen);
}

static int load_plc(const char *path, void *c, char *err, size_t errlen)
{
    return maa_plc_config_load(path, c, err, errlen);
}
#define expect_error_n(text, len, where_msg, line)                                        \
    expect_load_error(load_plc, sizeof(maa_plc_config), text, len, where_msg, line)
#define expect_error(text, where_msg) expect_error_n(text, strlen(text), where_msg, __LINE__)

/* The least a file must say: lines 1-2 the PLC, 3-5 one camera. */
#define PLC "plc:\n  address: 10.0.0.1\n"
#define CAM "cameras:\n  - name: groove\n    endpoint: tcp://127.0.0.1:5555\n"
#define REQ PLC CAM

static void test_defaults(void)
{
    maa_plc_config c;
    maa_plc_config_defaults(&c);
    CHECK(strcmp(c.line.name, "line") == 0 && c.line.deadline_ms == 2000);
    CHECK(c.line.sync_tolerance_ms == 5 && c.line.heartbeat_timeout_ms == 800);
    CHECK(c.plc.address[0] == '\0' && c.plc.port == 502 && c.plc.unit_id == 1);
    CHECK(c.plc.mailbox_register == 0 && c.plc.healthy_coil == 0 && c.plc.reject_coil == 1);
    CHECK(c.plc.response_timeout_ms == 200 && c.plc.ack_timeout_ms == 1000);
    CHECK(c.plc.health_period_ms == 100 && c.plc.reconnect_min_ms == 100);
    CHECK(c.plc.reconnect_max_ms == 5000 && c.plc.queue == 4096 && c.plc.late_ms == 0);
    CHECK(c.plc.pulse_delay_ms == 0 && c.plc.pulse_width_ms == 50 && !c.plc.dry_run);
    CHECK(c.ncameras == 0);
    /* maad's log rows: the same defaults as maad's. */
    maad_config m;
    maad_config_defaults(&m);
    CHECK(memcmp(&c.log, &m.log, sizeof c.log) == 0);
    CHECK(c.log.summary_interval_s == 10 && c.log.level == MAAD_CFG_LOG_INFO);
}

/* Absent keys take their default, in the sections and in every entry. */
static void test_minimal_file(void)
{
    maa_plc_config c, want;
    char err[MAA_ERRLEN] = "";
    CHECK(load(REQ "  - {name: hook, endpoint: \"ipc:///run/maad/hook\", offset: 3}\n", &c, err,
               sizeof err) == MAA_OK, "%s", err);
    maa_plc_config_defaults(&want);
    strcpy(want.plc.address, "10.0.0.1");
    want.ncameras = 2;
    strcpy(want.cameras[0].name, "groove");
    strcpy(want.cameras[0].endpoint, "tcp://127.0.0.1:5555");
    strcpy(want.cameras[1].name, "hook");
    strcpy(want.cameras[1].endpoint, "ipc:///run/maad/hook");
    want.cameras[1].offset = 3;
    CHECK(memcmp(&c, &want, sizeof c) == 0, "loaded config differs from the defaults");
}

/* Every key at a value other than its default. */
static const char full_yaml[] =
    "line:\n"
    "  name: press-line_2\n"
    "  deadline_ms: 600000\n"
    "  sync_tolerance_ms: 0.1\n"
    "  heartbeat_timeout_ms: 60000\n"
    "  curve_key: /etc/maa-plc/maa-plc.key_secret\n"
    "plc:\n"
    "  address: plc-7.line.example\n"
    "  port: 1502\n"
    "  unit_id: 255\n"
    "  mailbox_register: 65526\n"
    "  healthy_coil: 65535\n"
    "  reject_coil: 0\n"
    "  response_timeout_ms: 1\n"
    "  ack_timeout_ms: 600000\n"
    "  health_period_ms: 10\n"
    "  reconnect_min_ms: 60000\n"
    "  reconnect_max_ms: 60000\n"
    "  queue: 1\n"
    "  late_ms: 250\n"
    "  pulse_delay_ms: 1200\n"
    "  pulse_width_ms: 60000\n"
    "  dry_run: TRUE\n"
    "cameras:\n"
    "  - name: top\n"
    "    endpoint: \"tcp://10.0.0.2:5555\"\n"
    "    offset: 4\n"
    "    server_key: /etc/maa-plc/top.key\n"
    "  - {name: side_A, endpoint: 'tcp://[::1]:6000', offset: 0}\n"
    "  - offset: 10000\n"
    "    endpoint: \"ipc:///run/maad/\\\"q\\\"\"\n"
    "    name: Z\n"
    "log:\n"
    "  summary_interval_s: 3600\n"
    "  level: debug\n";

static const char full_dump[] =
    "line.name = \"press-line_2\"\n"
    "line.deadline_ms = 600000\n"
    "line.sync_tolerance_ms = 0.1\n"
    "line.heartbeat_timeout_ms = 60000\n"
    "line.curve_key = \"/etc/maa-plc/maa-plc.key_secret\"\n"
    "plc.address = \"plc-7.line.example\"\n"
    "plc.port = 1502\n"
    "plc.unit_id = 255\n"
    "plc.mailbox_register = 65526\n"
    "plc.healthy_coil = 65535\n"
    "plc.reject_coil = 0\n"
    "plc.response_timeout_ms = 1\n"
    "plc.ack_timeout_ms = 600000\n"
    "plc.health_period_ms = 10\n"
    "plc.reconnect_min_ms = 60000\n"
    "plc.reconnect_max_ms = 60000\n"
    "plc.queue = 1\n"
    "plc.late_ms = 250\n"
    "plc.pulse_delay_ms = 1200\n"
    "plc.pulse_width_ms = 60000\n"
    "plc.dry_run = true\n"
    "cameras[0].name = \"top\"\n"
    "cameras[0].endpoint = \"tcp://10.0.0.2:5555\"\n"
    "cameras[0].offset = 4\n"
    "cameras[0].server_key = \"/etc/maa-plc/top.key\"\n"
    "cameras[1].name = \"side_A\"\n"
    "cameras[1].endpoint = \"tcp://[::1]:6000\"\n"
    "cameras[1].offset = 0\n"
    "cameras[1].server_key = \"\"\n"
    "cameras[2].name = \"Z\"\n"
    "cameras[2].endpoint = \"ipc:///run/maad/\\\"q\\\"\"\n"
    "cameras[2].offset = 10000\n"
    "cameras[2].server_key = \"\"\n"
    "log.summary_interval_s = 3600\n"
    "log.level = debug\n";

static void test_full_file(void)
{
    maa_plc_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(load(full_yaml, &c, err, sizeof err) == MAA_OK, "%s", err);
    char *d = dump(&c);
    CHECK(strcmp(d, full_dump) == 0, "dump:\n%s", d);
    free(d);
    CHECK(c.ncameras == 3 && strcmp(c.cameras[2].endpoint, "ipc:///run/maad/\"q\"") == 0,
          "%d %s", c.ncameras, c.cameras[2].endpoint);
    CHECK(c.plc.dry_run && c.log.level == MAAD_CFG_LOG_DEBUG);
    /* No section key left at its default: the file exercises every row. */
    maa_plc_config def;
    maa_plc_config_defaults(&def);
    check_none_at_default(dump(&def), dump(&c));
}

/* 16 cameras (a 16-bit register's bits) load; the 17th is refused there. */
static void test_camera_count(void)
{
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, PLC "cameras:\n");
    for (int i = 0; i < MAA_PLC_MAX_CAMERAS; i++)
        n += (size_t)snprintf(text + n, sizeof text - n,
                              "  - {name: c%d, endpoint: \"tcp://h:%d\", offset: %d}\n", i,
                              5555 + i, i);
    maa_plc_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(load(text, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(c.ncameras == 16 && strcmp(c.cameras[15].name, "c15") == 0 &&
          c.cameras[15].offset == 15);
    snprintf(text + n, sizeof text - n, "  - {name: c16, endpoint: e}\n  - {name: c17}\n");
    expect_error(text, "20:5: section cameras: expected 1 to 16 entries, got 18");
    /* None: absent, null, empty. */
    expect_error(PLC, "1:1: section cameras: expected 1 to 16 entries, got 0");
    expect_error(PLC "cameras:\n", "3:1: section cameras: expected 1 to 16 entries, got 0");
    expect_error(PLC "cameras: []\n", "3:1: section cameras: expected 1 to 16 entries, got 0");
}

static void test_cameras_shape(void)
{
    expect_error(PLC "cameras:\n  name: groove\n",
                 "4:3: section cameras: expected a sequence of mappings, got a mapping");
    expect_error(PLC "cameras: groove\n",
                 "3:10: section cameras: expected a sequence of mappings, got a scalar");
    expect_error(CAM "  - hook\n" PLC, "4:5: cameras[1]: expected a mapping of keys, got a scalar");
    expect_error(CAM "  - [hook]\n" PLC,
                 "4:5: cameras[1]: expected a mapping of keys, got a sequence");
    expect_error(PLC "cameras:\n  - ? [name]\n    : groove\n",
                 "4:7: cameras[0]: expected a key name, got a sequence");
}

static void test_camera_keys(void)
{
    expect_error(PLC "cameras:\n  - name: groove\n    endpiont: tcp://h:1\n",
                 "5:5: unknown key 'cameras[0].endpiont' (did you mean 'cameras[0].endpoint'?)");
    expect_error(REQ "  - name: hook\n    ofset: 2\n",
                 "7:5: unknown key 'cameras[1].ofset' (did you mean 'cameras[1].offset'?)");
    /* Distance 3 and more: no suggestion; a section key is no candidate. */
    expect_error(REQ "    topic: maad.groove\n", "6:5: unknown key 'cameras[0].topic'");
    expect_error(REQ "    port: 502\n", "6:5: unknown key 'cameras[0].port'");
    expect_error(REQ "    offset: 1\n    name: hook\n",
                 "7:5: duplicate key cameras[0].name (first at 4:5)");
    expect_error(REQ "  - {name: hook, offset: 1, name: x}\n",
                 "6:29: duplicate key cameras[1].name (first at 6:6)");
    /* A missing key is reported at its entry. */
    expect_error(REQ "  - name: hook\n    offset: 1\n",
                 "6:5: missing required key cameras[1].endpoint");
    expect_error(REQ "  - {endpoint: \"tcp://h:1\"}\n",
                 "6:5: missing required key cameras[1].name");
    /* Values of an entry are checked as any other. */
    expect_error(REQ "    offset: 10001\n",
                 "6:13: cameras[0].offset: 10001 is out of range [0, 10000]");
    expect_error(REQ "    offset: \"1\"\n",
                 "6:13: cameras[0].offset: expected an integer, got the quoted string \"1\"");
    expect_error(REQ "    offset: -1\n", "6:13: cameras[0].offset: -1 is out of range [0, 10000]");
    expect_error(PLC "cameras:\n  - name: groove.top\n    endpoint: e\n",
                 "4:11: cameras[0].name: \"groove.top\" is not 1 to 32 characters from A-Z a-z "
                 "0-9 _ -");
    expect_error(PLC "cameras:\n  - name: groove\n    endpoint: \"\"\n",
                 "5:15: cameras[0].endpoint: expected 1 to 255 bytes, got an empty string");
    expect_error(PLC "cameras:\n  - name: groove\n    endpoint:\n",
                 "5:14: cameras[0].endpoint: expected 1 to 255 bytes, got an empty string");
    expect_error(PLC "cameras:\n  - name: groove\n    endpoint: [a, b]\n",
                 "5:15: cameras[0].endpoint: expected a string, got a sequence");
}

static void test_camera_rules(void)
{
    expect_error(REQ "  - name: hook\n    endpoint: e\n    offset: 1\n"
                     "  - name: groove\n    endpoint: f\n    offset: 2\n",
                 "9:5: duplicate camera name groove (first at 4:5)");
    expect_error(PLC "cameras:\n  - {name: a, endpoint: e, offset: 1}\n"
                     "  - {name: b, endpoint: f, offset: 2}\n",
                 "3:1: no camera has offset 0 (the first camera of the line has offset 0)");
    /* The first camera of the line need not be the first entry. */
    maa_plc_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(load(PLC "cameras:\n  - {name: a, endpoint: e, offset: 1}\n"
                   "  - {name: b, endpoint: f}\n", &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(c.ncameras == 2 && c.cameras[1].offset == 0 && c.cameras[0].offset == 1);
}

static void test_plc_rules(void)
{
    /* plc.address: missing (at its section, else at the top), empty. */
    expect_error(CAM "plc:\n  port: 1502\n", "4:1: missing required key plc.address");
    expect_error(CAM, "1:1: missing required key plc.address");
    expect_error(CAM "plc:\n  address: \"\"\n",
                 "5:12: plc.address: expected 1 to 255 bytes, got an empty string");
    expect_error(CAM "plc:\n  address:\n",
                 "5:11: plc.address: expected 1 to 255 bytes, got an empty string");
    /* Reconnection delays, reported at the minimum (the maximum's lower
     * bound is the minimum's default: the maximum alone cannot break the
     * rule).  Equal is fine. */
    expect_error(PLC "  reconnect_min_ms: 6000\n" CAM,
                 "3:3: plc.reconnect_min_ms (6000) is greater than plc.reconnect_max_ms (5000)");
    expect_error(PLC "  reconnect_max_ms: 100\n  reconnect_min_ms: 101\n" CAM,
                 "4:3: plc.reconnect_min_ms (101) is greater than plc.reconnect_max_ms (100)");
    maa_plc_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(load(PLC "  reconnect_min_ms: 5000\n" CAM, &c, err, sizeof err) == MAA_OK, "%s", err);
    /* One coil for both signals, only with a reject pulse: reported at
     * reject_coil when set, else at healthy_coil. */
    expect_error(PLC "  pulse_delay_ms: 300\n  reject_coil: 0\n" CAM,
                 "4:3: plc.reject_coil (0) is also plc.healthy_coil; with plc.pulse_delay_ms "
                 "> 0 the reject pulse needs a coil of its own");
    expect_error(PLC "  healthy_coil: 1\n  pulse_delay_ms: 1\n" CAM,
                 "3:3: plc.reject_coil (1) is also plc.healthy_coil; with plc.pulse_delay_ms "
                 "> 0 the reject pulse needs a coil of its own");
    CHECK(load(PLC "  healthy_coil: 1\n" CAM, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(c.plc.healthy_coil == 1 && c.plc.reject_coil == 1 && c.plc.pulse_delay_ms == 0);
    expect_error(PLC "  unit_id: 248\n" CAM,
                 "3:3: plc.unit_id 248 is reserved by Modbus (use 0..247, or 255)");
    CHECK(load(PLC "  unit_id: 255\n" CAM, &c, err, sizeof err) == MAA_OK, "%s", err);
}

/* What maad's loader refuses, maa-plc's file refuses the same way. */
static void test_common_errors(void)
{
    expect_error("", "1:1: empty file");
    expect_error("- plc\n", "1:1: expected a mapping of sections (line:, plc:, cameras:, ...), "
                             "got a sequence");
    expect_error(REQ "---\nlog: {level: info}\n", "7:1: more than one YAML document in the file");
    expect_error(REQ "  - name: [x\n",
                 "7:1: YAML syntax error: did not find expected ',' or ']' "
                 "(while parsing a flow sequence at 6:11)");
    expect_error(REQ "camras: []\n", "6:1: unknown section 'camras' (did you mean 'cameras'?)");
    expect_error(REQ "bus: {}\n", "6:1: unknown section 'bus'");
    expect_error(REQ "cameras: []\n", "6:1: duplicate section cameras (first at 3:1)");
    expect_error(PLC "  adress: h\n" CAM,
                 "3:3: unknown key 'plc.adress' (did you mean 'plc.address'?)");
    expect_error(REQ "log:\n  summary_interval: 5\n",
                 "7:3: unknown key 'log.summary_interval' "
                 "(did you mean 'log.summary_interval_s'?)");
    expect_error(REQ "plc2: {}\n", "6:1: unknown section 'plc2' (did you mean 'plc'?)");
    expect_error(REQ "log:\n  levle: info\n",
                 "7:3: unknown key 'log.levle' (did you mean 'log.level'?)");
    expect_error(PLC "  port: 502\n  port: 503\n" CAM,
                 "4:3: duplicate key plc.port (first at 3:3)");
    expect_error(PLC "  port: \"502\"\n" CAM,
                 "3:9: plc.port: expected an integer, got the quoted string \"502\"");
    expect_error(PLC "  port: 0\n" CAM, "3:9: plc.port: 0 is out of range [1, 65535]");
    expect_error(PLC "  port: {n: 1}\n" CAM, "3:9: plc.port: expected an integer, got a mapping");
    expect_error(PLC "  dry_run: yes\n" CAM, "3:12: plc.dry_run: expected true/false, got \"yes\"");
    expect_error(REQ "line:\n  sync_tolerance_ms: 0.05\n",
                 "7:22: line.sync_tolerance_ms: 0.05 is out of range [0.1, 10000]");
    expect_error(REQ "line:\n  name: line 1\n",
                 "7:9: line.name: \"line 1\" is not 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error(REQ "log:\n  level: error\n",
                 "7:10: log.level: \"error\" is not one of: debug, info, notice, warning");
    expect_error(REQ "line: [a]\n",
                 "6:7: section line: expected a mapping of keys, got a sequence");
    /* CURVE to a maad needs maa-plc's own key too. */
    expect_error(REQ "    server_key: maad.key\n",
                 "6:5: camera groove has a server_key (CURVE) but line.curve_key, maa-plc's own "
                 "certificate, is not set");
    /* An empty section is an absent one. */
    maa_plc_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(load(REQ "line:\nlog: ~\n", &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(strcmp(c.line.name, "line") == 0 && c.log.level == MAAD_CFG_LOG_INFO);

    char path[128], want[256];
    snprintf(path, sizeof path, "%s/no-such.yaml", tmpdir);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    CHECK(maa_plc_config_load(path, &c, err, sizeof err) == MAA_ERR);
    CHECK(strcmp(err, want) == 0, "%s", err);
    CHECK(maa_plc_config_load(path, &c, NULL, 0) == MAA_ERR);
    /* 1 MiB and a byte: not a config file, however it would parse. */
    size_t big = (1u << 20) + 1;
    char *text = malloc(big);
    CHECK(text != NULL);
    if (!text)
        return;
    memset(text, '#', big);
    memcpy(text, REQ, strlen(REQ));
    const char *at = write_file("big.yaml", text, big);
    snprintf(want, sizeof want, "%s: larger than 1 MiB, not a config file", at);
    CHECK(maa_plc_config_load(at, &c, err, sizeof err) == MAA_ERR);
    CHECK(strcmp(err, want) == 0, "%s", err);
    free(text);
}

static void test_example_file(void)
{
    char *doc = capture(maa_plc_config_write_doc);
    check_generated("config/maa-plc.example.yaml", doc, "build/tests/maa-plc.example.yaml");
    /* It loads as the defaults, its PLC address and its line of three. */
    maa_plc_config c, want;
    char err[MAA_ERRLEN] = "";
    CHECK(load(doc, &c, err, sizeof err) == MAA_OK, "%s", err);
    maa_plc_config_defaults(&want);
    strcpy(want.plc.address, "192.168.0.10");
    want.ncameras = 3;
    static const char *const names[] = {"groove", "cylinder", "hook"};
    for (int i = 0; i < 3; i++) {
        strcpy(want.cameras[i].name, names[i]);
        snprintf(want.cameras[i].endpoint, sizeof want.cameras[i].endpoint,
                 "tcp://127.0.0.1:%d", 5555 + i);
        want.cameras[i].offset = i;
    }
    CHECK(memcmp(&c, &want, sizeof c) == 0, "the example does not load as expected");
    CHECK(maa_plc_config_load("config/maa-plc.example.yaml", &c, err, sizeof err) == MAA_OK,
          "%s", err);
    /* Every key appears, with its doc. */
    char *d = dump(&want);
    check_every_key_shown(d, doc);
    free(d);
    free(doc);
}

static void test_docs_table(void)
{
    check_docs_table("docs/plc.md", "maa_plc_config_write_table()", maa_plc_config_write_table,
                     "build/tests/plc-config-table.md");
    char *table = capture(maa_plc_config_write_table);
    /* One row per key of the dump, and one for the cameras list. */
    maa_plc_config c;
    maa_plc_config_defaults(&c);
    c.ncameras = 1;
    char *d = dump(&c);
    int rows = -2, keys = 0; /* the header and its rule are no keys */
    for (const char *p = table; (p = strchr(p, '\n')); p++)
        rows++;
    for (const char *p = d; (p = strchr(p, '\n')); p++)
        keys++;
    CHECK(rows == keys + 1, "%d rows for %d keys", rows, keys);
    CHECK(strstr(table, "| `cameras[].offset` | integer 0..10000 | `0` |") != NULL);
    free(d);
    free(table);
}

int main(void)
{
    if (make_tmpdir("test_plc_config"))
        return 1;
    RUN(test_defaults);
    RUN(test_minimal_file);
    RUN(test_full_file);
    RUN(test_camera_count);
    RUN(test_cameras_shape);
    RUN(test_camera_keys);
    RUN(test_camera_rules);
    RUN(test_plc_rules);
    RUN(test_common_errors);
    RUN(test_example_file);
    RUN(test_docs_table);
    remove_tmpdir();
    return CHECK_SUMMARY();
}

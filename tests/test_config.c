/* test_config.c — the configuration loader: every error class with its exact
 * FILE:LINE:COL, defaults (also against the camera module's), a full file,
 * path resolution, and the committed example file and docs table against
 * the key table.  Run from the
 * repository root (tests/run.sh does). */
#include "config/config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "camera/camera.h"
#include "engine/engine.h"
#include "tests/check.h"
#include "tests/config_files.h"

static char *dump(const maad_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    maad_config_dump(c, m);
    fclose(m);
    return buf;
}

static int load_maad(const char *path, void *c, char *err, size_t errlen)
{
    return maad_config_load(path, c, err, errlen);
}
#define expect_error_n(text, len, where_msg, line)                                        \
    expect_load_error(load_maad, sizeof(maad_config), text, len, where_msg, line)
#define expect_error(text, where_msg) expect_error_n(text, strlen(text), where_msg, __LINE__)

#define REQ "camera:\n  name: cam0\nmodel:\n  path: m\n  calibration: c\n"

static void test_yaml_syntax_errors(void)
{
    expect_error("camera:\n  name: cam0\n   width: 5\n",
                 "3:9: YAML syntax error: mapping values are not allowed in this context");
    expect_error("camera:\n  name: cam0\n  width: [1, 2\nmodel:\n  path: x\n",
                 "4:6: YAML syntax error: did not find expected ',' or ']' "
                 "(while parsing a flow sequence at 3:10)");
    expect_error("camera:\n  name: \"cam0\n",
                 "3:1: YAML syntax error: found unexpected end of stream "
                 "(while scanning a quoted scalar at 2:9)");
    /* Reader errors carry only a byte offset; the column counts characters. */
    expect_error("camera:\n  name: caf\xc3\xa9\xff\n",
                 "2:13: YAML syntax error: invalid leading UTF-8 octet");
    expect_error(REQ "---\nlog: {level: info}\n", "7:1: more than one YAML document in the file");
}

/* libyaml's loader takes time quadratic in the nesting depth and in the
 * number of anchors (2 s for 40,000 levels in 80 KB; the 1 MiB a file may
 * have would take an hour): the file's events are counted first, and it is
 * refused at the first one beyond a limit, before the load.  At the limits
 * the load runs and the schema says what is wrong. */
static void test_yaml_limits(void)
{
    enum { DEEP = 40000 };
    char *text = malloc(2 * DEEP + 16), want[64];
    size_t n = (size_t)sprintf(text, "camera: ");
    memset(text + n, '[', DEEP);
    memset(text + n + DEEP, ']', DEEP);
    strcpy(text + n + 2 * DEEP, "\n");
    /* The top-level mapping is the first level, the 32nd '[' the 33rd. */
    expect_error_n(text, strlen(text), "1:40: nested deeper than 32 levels", __LINE__);
    memset(text + n, '[', 31);
    memset(text + n + 31, ']', 31);
    strcpy(text + n + 62, "\n");
    expect_error(text, "1:9: section camera: expected a mapping of keys, got a sequence");
    free(text);

    /* 65 anchors, then 65 aliases. */
    char many[1024];
    n = (size_t)sprintf(many, "camera: [");
    for (int i = 0; i < 65; i++)
        n += (size_t)sprintf(many + n, "&a%d 0, ", i);
    strcpy(many + n, "]\n");
    snprintf(want, sizeof want, "1:%td: more than 64 anchors (&name)",
             strstr(many, "&a64") - many + 1);
    expect_error(many, want);
    strcpy(strstr(many, "&a64"), "]\n");
    expect_error(many, "1:9: section camera: expected a mapping of keys, got a sequence");
    n = (size_t)sprintf(many, "camera: [&a 0");
    for (int i = 0; i < 65; i++)
        n += (size_t)sprintf(many + n, ", *a");
    strcpy(many + n, "]\n");
    snprintf(want, sizeof want, "1:%zu: more than 64 aliases (*name)", n - 1);
    expect_error(many, want);
    strcpy(many + n - 4, "]\n");
    expect_error(many, "1:9: section camera: expected a mapping of keys, got a sequence");
}

static void test_empty_and_top_level(void)
{
    expect_error("", "1:1: empty file");
    expect_error("# nothing but\n\n# comments\n", "1:1: empty file");
    expect_error("- camera\n- model\n",
                 "1:1: expected a mapping of sections (camera:, model:, ...), got a sequence");
    expect_error("just words\n",
                 "1:1: expected a mapping of sections (camera:, model:, ...), got a scalar");
    expect_error("? [a]\n: 1\n", "1:3: expected a section name, got a sequence");
}

static void test_unknown_names(void)
{
    expect_error(REQ "log:\n  levle: info\n",
                 "7:3: unknown key 'log.levle' (did you mean 'log.level'?)");
    expect_error("camera:\n  name: cam0\n  widht: 640\n",
                 "3:3: unknown key 'camera.widht' (did you mean 'camera.width'?)");
    expect_error(REQ "  gama: 3\n", "6:3: unknown key 'model.gama' (did you mean 'model.gamma'?)");
    /* Distance 3 and more: no suggestion. */
    expect_error("camera:\n  name: cam0\n  colour: red\n", "3:3: unknown key 'camera.colour'");
    expect_error("camra:\n  name: cam0\n", "1:1: unknown section 'camra' (did you mean 'camera'?)");
    expect_error(REQ "network:\n  port: 1\n", "6:1: unknown section 'network'");
}

static void test_wrong_types(void)
{
    expect_error(REQ "engine:\n  batch_max: four\n",
                 "7:14: engine.batch_max: expected an integer, got \"four\"");
    expect_error(REQ "engine:\n  batch_max: 2.5\n",
                 "7:14: engine.batch_max: expected an integer, got \"2.5\"");
    expect_error(REQ "engine:\n  batch_max: \"4\"\n",
                 "7:14: engine.batch_max: expected an integer, got the quoted string \"4\"");
    expect_error(REQ "engine:\n  batch_max:\n",
                 "7:13: engine.batch_max: expected an integer, got an empty value");
    expect_error(REQ "engine:\n  batch_max: {n: 4}\n",
                 "7:14: engine.batch_max: expected an integer, got a mapping");
    expect_error(REQ "engine:\n  batch_timeout_ms: soon\n",
                 "7:21: engine.batch_timeout_ms: expected a number, got \"soon\"");
    expect_error(REQ "engine:\n  batch_timeout_ms: .nan\n",
                 "7:21: engine.batch_timeout_ms: expected a number, got \".nan\"");
    expect_error(REQ "replay:\n  loop: yes\n",
                 "7:9: replay.loop: expected true/false, got \"yes\"");
    expect_error(REQ "replay:\n  loop: [true]\n",
                 "7:9: replay.loop: expected true/false, got a sequence");
    expect_error(REQ "publish:\n  endpoint: [tcp]\n",
                 "7:13: publish.endpoint: expected a string, got a sequence");
    /* Half of CURVE would refuse everyone or allow anyone. */
    expect_error(REQ "publish:\n  curve_secret_key: k.key_secret\n",
                 "7:3: publish.curve_secret_key and publish.curve_clients go together: set both for "
                 "CURVE, neither for plain mode");
    expect_error(REQ "publish:\n  curve_clients: clients\n",
                 "7:3: publish.curve_secret_key and publish.curve_clients go together: set both for "
                 "CURVE, neither for plain mode");
}

static void test_out_of_range(void)
{
    expect_error(REQ "  gamma: 100.5\n", "6:10: model.gamma: 100.5 is out of range [-10, 100]");
    expect_error(REQ "replay:\n  fps: 0.05\n", "7:8: replay.fps: 0.05 is out of range [0.1, 1000]");
    expect_error("camera:\n  name: cam0\n  width: 70000\n",
                 "3:10: camera.width: 70000 is out of range [0, 65535]");
    expect_error("camera:\n  name: cam0\n  width: -1\n",
                 "3:10: camera.width: -1 is out of range [0, 65535]");
    expect_error("camera:\n  name: cam0\n  width: 99999999999999999999\n",
                 "3:10: camera.width: 99999999999999999999 is out of range [0, 65535]");
    expect_error("camera:\n  name: cam0\n  exposure_us: 2e7\n",
                 "3:16: camera.exposure_us: 2e7 is out of range [0, 10000000]");
    expect_error(REQ "engine:\n  ring_slots: 48\n",
                 "7:15: engine.ring_slots: 48 is not a power of two");
    expect_error(REQ "engine:\n  ring_slots: 8192\n",
                 "7:15: engine.ring_slots: 8192 is out of range [2, 4096]");
}

static void test_bad_enum(void)
{
    expect_error("camera:\n  name: cam0\n  source: usb\n",
                 "3:11: camera.source: \"usb\" is not one of: aravis, replay");
    expect_error("camera:\n  name: cam0\n  pixel_format: mono8\n",
                 "3:17: camera.pixel_format: \"mono8\" is not one of: Mono8, RGB8, BayerRG8, "
                 "BayerGR8, BayerGB8, BayerBG8");
    expect_error(REQ "log:\n  level: error\n",
                 "7:10: log.level: \"error\" is not one of: debug, info, notice, warning");
    expect_error(REQ "engine: {backend: }\n",
                 "6:19: engine.backend: \"\" is not one of: auto, ref, cpu, cuda");
}

static void test_duplicates(void)
{
    expect_error("camera:\n  name: cam0\n  width: 640\n  height: 480\n  width: 320\n",
                 "5:3: duplicate key camera.width (first at 3:3)");
    expect_error(REQ "log:\n  level: info\nlog:\n  level: debug\n",
                 "8:1: duplicate section log (first at 6:1)");
}

static void test_missing_required(void)
{
    /* The section is there: reported at the section. */
    expect_error("model:\n  path: m\n  calibration: c\ncamera:\n  width: 640\n",
                 "4:1: missing required key camera.name");
    /* The section is absent: reported at the top of the file. */
    expect_error("camera:\n  name: cam0\n", "1:1: missing required key model.path");
    expect_error("camera:\n  name: cam0\nmodel:\n  path: m\n",
                 "3:1: missing required key model.calibration");
}

static void test_non_mapping_section(void)
{
    expect_error("camera: 5\n", "1:9: section camera: expected a mapping of keys, got a scalar");
    expect_error("camera:\n  - name\n",
                 "2:3: section camera: expected a mapping of keys, got a sequence");
    expect_error("camera:\n  name: cam0\n  [w]: 1\n",
                 "3:3: section camera: expected a key name, got a sequence");
}

static void test_strings(void)
{
    char text[1024];
    char longs[300];
    memset(longs, 'x', 256);
    longs[256] = '\0';
    snprintf(text, sizeof text, "camera:\n  name: cam0\n  device_id: %s\n", longs);
    expect_error(text, "3:14: camera.device_id: too long (256 bytes, at most 255)");
    expect_error("camera:\n  name: abcdefghijklmnopqrstuvwxyz0123456\n",
                 "2:9: camera.name: too long (33 bytes, at most 32)");
    expect_error("camera:\n  name: cam 0\n",
                 "2:9: camera.name: \"cam 0\" is not 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error("camera:\n  name: \"\"\n",
                 "2:9: camera.name: \"\" is not 1 to 32 characters from A-Z a-z 0-9 _ -");
    expect_error("camera:\n  name: \"a\\0b\"\n", "2:9: camera.name: contains a NUL byte");
}

static void test_cross_key_rules(void)
{
    expect_error("camera:\n  name: cam0\n  reconnect_min_ms: 20000\n"
                 "model: {path: m, calibration: c}\n",
                 "3:3: camera.reconnect_min_ms (20000) is greater than "
                 "camera.reconnect_max_ms (10000)");
    /* Only the maximum set: reported there. */
    expect_error("camera:\n  name: cam0\n  reconnect_max_ms: 200\n"
                 "model: {path: m, calibration: c}\n",
                 "3:3: camera.reconnect_min_ms (500) is greater than "
                 "camera.reconnect_max_ms (200)");
    /* The drift alarm's min_frames within its window. */
    expect_error("camera:\n  name: cam0\nmodel: {path: m, calibration: c}\n"
                 "drift:\n  window_frames: 40\n",
                 "5:3: drift.min_frames (50) is greater than drift.window_frames (40)");
    expect_error("camera:\n  name: cam0\n  source: replay\n" "model: {path: m, calibration: c}\n",
                 "3:3: replay.dir is required when camera.source is replay");
    /* A frame timeout shorter than the frame period would report every
     * frame as a lost camera, free-run or software-triggered. */
    expect_error("camera:\n  name: cam0\n  frame_rate: 0.5\n  timeout_ms: 1000\n"
                 "model: {path: m, calibration: c}\n",
                 "4:3: camera.timeout_ms (1000) is shorter than the frame period of "
                 "camera.frame_rate (0.5 frames/s: 2000 ms); make it longer, or 0 to "
                 "derive it from the frame rate");
    expect_error("camera:\n  name: cam0\n  timeout_ms: 20\n  trigger: software\n"
                 "model: {path: m, calibration: c}\n",
                 "3:3: camera.timeout_ms (20) is shorter than the frame period of "
                 "camera.frame_rate (33 frames/s: 30.3 ms); make it longer, or 0 to "
                 "derive it from the frame rate");
    /* A hardware trigger has no frame timeout, a replay no camera: unused. */
    static const char hw[] = "camera:\n  name: cam0\n  frame_rate: 0.5\n  timeout_ms: 1000\n"
                             "  trigger: hardware\nmodel: {path: m, calibration: c}\n";
    maad_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_config_load(write_file("hw.yaml", hw, sizeof hw - 1), &c, err, sizeof err) ==
              MAA_OK, "%s", err);
    static const char rp[] = "camera:\n  name: cam0\n  frame_rate: 0.5\n  timeout_ms: 1000\n"
                             "  source: replay\nreplay: {dir: d}\nmodel: {path: m, calibration: c}\n";
    CHECK(maad_config_load(write_file("rp.yaml", rp, sizeof rp - 1), &c, err, sizeof err) ==
              MAA_OK, "%s", err);
    expect_error("camera:\n  name: cam0\n  source: replay\n" "model: {path: m, calibration: c}\n"
                 "replay:\n  dir: \"\"\n",
                 "6:3: replay.dir is required when camera.source is replay");
}

static void test_unreadable_file(void)
{
    char path[128], err[MAA_ERRLEN] = "", want[256];
    maad_config c;
    snprintf(path, sizeof path, "%s/no-such.yaml", tmpdir);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_ERR);
    CHECK(strcmp(err, want) == 0, "%s", err);
    /* err may be NULL. */
    CHECK(maad_config_load(path, &c, NULL, 0) == MAA_ERR);
    const char *bad = write_file("bad.yaml", "camera: 5\n", 10);
    CHECK(maad_config_load(bad, &c, NULL, 0) == MAA_ERR);
    /* A directory read as a FILE stream said "Input/output error"; a FIFO
     * hung the open until a writer came. */
    snprintf(path, sizeof path, "%s/conf.d", tmpdir);
    CHECK(mkdir(path, 0700) == 0, "cannot make %s", path);
    snprintf(want, sizeof want, "%s: is a directory, not a file", path);
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_ERR && !strcmp(err, want), "%s",
          err);
    snprintf(path, sizeof path, "%s/fifo.yaml", tmpdir);
    CHECK(mkfifo(path, 0600) == 0, "cannot make %s", path);
    snprintf(want, sizeof want, "%s: not a regular file", path);
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_ERR && !strcmp(err, want), "%s",
          err);
}

static void test_defaults_for_absent_keys(void)
{
    static const char text[] = "camera:\n  name: line3_cam-A\nmodel:\n"
                               "  path: /data/m.st\n  calibration: /data/c.json\n";
    const char *path = write_file("min.yaml", text, sizeof text - 1);
    maad_config c, want;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    maad_config_defaults(&want);
    strcpy(want.camera.name, "line3_cam-A");
    strcpy(want.model.path, "/data/m.st");
    strcpy(want.model.calibration, "/data/c.json");
    CHECK(memcmp(&c, &want, sizeof c) == 0, "loaded config differs from the defaults");
    /* The defaults the brief fixes, spot-checked by value. */
    CHECK(c.camera.source == MAAD_SOURCE_ARAVIS && c.camera.pixel_format == MAAD_PIX_MONO8);
    CHECK(c.camera.width == 0 && c.camera.gain_db == -1 && c.camera.frame_rate == 33);
    CHECK(c.camera.trigger == MAAD_TRIGGER_FREE && strcmp(c.camera.trigger_source, "Line0") == 0);
    /* timeout_ms 0: the camera module derives it from the frame rate. */
    CHECK(c.camera.packet_socket && c.camera.stream_buffers == 16 && c.camera.timeout_ms == 0);
    CHECK(c.camera.reconnect_min_ms == 500 && c.camera.reconnect_max_ms == 10000);
    CHECK(c.replay.dir[0] == '\0' && c.replay.fps == 33 && !c.replay.loop);
    CHECK(!c.model.has_gamma);
    CHECK(c.engine.backend == MAAD_BACKEND_AUTO && c.engine.precision == MAAD_PREC_DEFAULT);
    CHECK(c.engine.batch_max == 4 && c.engine.ring_slots == 64 && c.engine.test_delay_ms == 0);
    CHECK(c.engine.max_age_ms == 1000);
    CHECK(c.mask.format == MAAD_CFG_MASK_PNG && c.mask.min_region_area == -1);
    /* Loopback: a socket other hosts reach is the installer's choice. */
    CHECK(strcmp(c.publish.endpoint, "tcp://127.0.0.1:5555") == 0 && c.publish.sndhwm == 1000);
    CHECK(c.publish.subscriber_budget_mib == 64 && !c.publish.curve_secret_key[0] &&
          !c.publish.curve_clients[0]);
    CHECK(c.publish.heartbeat_ms == 500);
    CHECK(c.log.summary_interval_s == 10 && c.log.level == MAAD_CFG_LOG_INFO);
}

/* Every key at a value other than its default. */
static const char full_yaml[] =
    "# a complete configuration\n"
    "camera:\n"
    "  name: press_7\n"
    "  source: replay\n"
    "  device_id: 'Basler-0815 \"front\"'\n"
    "  pixel_format: BayerGB8\n"
    "  width: 1024\n"
    "  height: 768\n"
    "  offset_x: 16\n"
    "  offset_y: 32\n"
    "  exposure_us: 1500.5\n"
    "  gain_db: 6.25\n"
    "  frame_rate: 12.5\n"
    "  trigger: hardware\n"
    "  trigger_source: Line2\n"
    "  packet_size: 9000\n"
    "  packet_socket: False\n"
    "  stream_buffers: 32\n"
    "  timeout_ms: 250\n"
    "  reconnect_min_ms: 100\n"
    "  reconnect_max_ms: 100\n"
    "  realtime_priority: 50\n"
    "replay: {dir: /srv/frames, fps: 0.1, loop: TRUE}\n"
    "model:\n"
    "  path: /opt/maad/model.safetensors\n"
    "  calibration: /opt/maad/calib.json\n"
    "  rule: mask\n"
    "  gamma: -2.5\n"
    "engine:\n"
    "  backend: cuda\n"
    "  precision: bf16\n"
    "  threads: 8\n"
    "  device: 1\n"
    "  batch_max: 64\n"
    "  batch_timeout_ms: 2.5\n"
    "  ring_slots: 4096\n"
    "  max_failed_batches: 0\n"
    "  max_age_ms: 250\n"
    "  test_delay_ms: 40\n"
    "mask:\n"
    "  format: none\n"
    "  min_region_area: 1000000\n"
    "publish:\n"
    "  endpoint: \"tcp://127.0.0.1:6000\"\n"
    "  sndhwm: 1\n"
    "  subscriber_budget_mib: 65536\n"
    "  curve_secret_key: /etc/maad/keys/maad.key_secret\n"
    "  curve_clients: /etc/maad/clients\n"
    "  heartbeat_ms: 50\n"
    "log:\n"
    "  summary_interval_s: 3600\n"
    "  level: debug\n"
    "archive:\n"
    "  dir: /var/lib/maad/archive\n"
    "  max_bytes: 2.5e9\n"
    "  max_files: 3000\n"
    "  sample_passes: 100\n"
    "  queue: 4\n"
    "metrics:\n"
    "  listen: \"[::1]:9100\"\n"
    "drift:\n"
    "  enabled: false\n"
    "  window_frames: 200\n"
    "  window_s: 120\n"
    "  min_frames: 30\n"
    "  mean_fraction: 0.5\n"
    "  reject_rate: 0.02\n";

static const char full_dump[] =
    "camera.name = \"press_7\"\n"
    "camera.source = replay\n"
    "camera.device_id = \"Basler-0815 \\\"front\\\"\"\n"
    "camera.pixel_format = BayerGB8\n"
    "camera.width = 1024\n"
    "camera.height = 768\n"
    "camera.offset_x = 16\n"
    "camera.offset_y = 32\n"
    "camera.exposure_us = 1500.5\n"
    "camera.gain_db = 6.25\n"
    "camera.frame_rate = 12.5\n"
    "camera.trigger = hardware\n"
    "camera.trigger_source = \"Line2\"\n"
    "camera.packet_size = 9000\n"
    "camera.packet_socket = false\n"
    "camera.stream_buffers = 32\n"
    "camera.timeout_ms = 250\n"
    "camera.reconnect_min_ms = 100\n"
    "camera.reconnect_max_ms = 100\n"
    "camera.realtime_priority = 50\n"
    "replay.dir = \"/srv/frames\"\n"
    "replay.fps = 0.1\n"
    "replay.loop = true\n"
    "model.path = \"/opt/maad/model.safetensors\"\n"
    "model.calibration = \"/opt/maad/calib.json\"\n"
    "model.rule = mask\n"
    "model.gamma = -2.5\n"
    "engine.backend = cuda\n"
    "engine.precision = bf16\n"
    "engine.threads = 8\n"
    "engine.device = 1\n"
    "engine.batch_max = 64\n"
    "engine.batch_timeout_ms = 2.5\n"
    "engine.ring_slots = 4096\n"
    "engine.max_failed_batches = 0\n"
    "engine.max_age_ms = 250\n"
    "engine.test_delay_ms = 40\n"
    "mask.format = none\n"
    "mask.min_region_area = 1000000\n"
    "publish.endpoint = \"tcp://127.0.0.1:6000\"\n"
    "publish.sndhwm = 1\n"
    "publish.subscriber_budget_mib = 65536\n"
    "publish.curve_secret_key = \"/etc/maad/keys/maad.key_secret\"\n"
    "publish.curve_clients = \"/etc/maad/clients\"\n"
    "publish.heartbeat_ms = 50\n"
    "log.summary_interval_s = 3600\n"
    "log.level = debug\n"
    "archive.dir = \"/var/lib/maad/archive\"\n"
    "archive.max_bytes = 2500000000\n"
    "archive.max_files = 3000\n"
    "archive.sample_passes = 100\n"
    "archive.queue = 4\n"
    "metrics.listen = \"[::1]:9100\"\n"
    "drift.enabled = false\n"
    "drift.window_frames = 200\n"
    "drift.window_s = 120\n"
    "drift.min_frames = 30\n"
    "drift.mean_fraction = 0.5\n"
    "drift.reject_rate = 0.02\n";

/* A key left out of the file behaves as the camera module documents: every
 * cam_config field a camera.* or replay.* key sets starts at the camera
 * module's default (one source: CAM_DEFAULT_* in camera.h).  The one
 * exception is camera.frame_rate, which maad needs (its software trigger,
 * batch timeout and frame timeout follow it), where the module's 0 leaves
 * the camera's own rate. */
static void test_camera_defaults(void)
{
    maad_config c;
    cam_config cc;
    maad_config_defaults(&c);
    cam_config_defaults(&cc);
    const maad_camera_config *k = &c.camera;
#define SAME(cam, cfg) CHECK((double)(cam) == (double)(cfg), "camera %g, config %g", \
                             (double)(cam), (double)(cfg))
    SAME(cc.source, k->source);
    CHECK(!cc.device_id || !*cc.device_id, "camera device_id %s", cc.device_id);
    CHECK(!k->device_id[0], "config device_id %s", k->device_id);
    SAME(cc.pixel_format, k->pixel_format);
    SAME(cc.width, k->width);
    SAME(cc.height, k->height);
    SAME(cc.offset_x, k->offset_x);
    SAME(cc.offset_y, k->offset_y);
    SAME(cc.exposure_us, k->exposure_us);
    SAME(cc.gain_db, k->gain_db);
    SAME(cc.trigger, k->trigger);
    CHECK(cc.trigger_source && !strcmp(cc.trigger_source, k->trigger_source),
          "camera trigger_source %s, config %s", cc.trigger_source ? cc.trigger_source : "NULL",
          k->trigger_source);
    SAME(cc.packet_size, k->packet_size);
    SAME(cc.packet_socket, k->packet_socket);
    SAME(cc.stream_buffers, k->stream_buffers);
    SAME(cc.timeout_ms, k->timeout_ms);
    SAME(cc.reconnect_min_ms, k->reconnect_min_ms);
    SAME(cc.reconnect_max_ms, k->reconnect_max_ms);
    SAME(cc.realtime_priority, k->realtime_priority);
    CHECK(!cc.replay_dir && !c.replay.dir[0]);
    SAME(cc.replay_fps, c.replay.fps);
    SAME(cc.replay_loop, c.replay.loop);
#undef SAME
    CHECK(cc.frame_rate == 0 && k->frame_rate > 0, "frame_rate: camera %g, config %g",
          cc.frame_rate, k->frame_rate);
}

static void test_full_file(void)
{
    const char *path = write_file("full.yaml", full_yaml, sizeof full_yaml - 1);
    maad_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    char *d = dump(&c);
    CHECK(strcmp(d, full_dump) == 0, "dump:\n%s", d);
    free(d);
    CHECK(c.camera.source == MAAD_SOURCE_REPLAY && c.camera.pixel_format == MAAD_PIX_BAYER_GB8);
    CHECK(c.camera.trigger == MAAD_TRIGGER_HARDWARE && !c.camera.packet_socket);
    CHECK(c.model.has_gamma && c.model.gamma == -2.5 && c.model.rule == MAAD_RULE_MASK);
    CHECK(c.engine.backend == MAAD_BACKEND_CUDA && c.engine.precision == MAAD_PREC_BF16);
    CHECK(c.mask.format == MAAD_CFG_MASK_NONE && c.log.level == MAAD_CFG_LOG_DEBUG);
    CHECK(strcmp(c.camera.device_id, "Basler-0815 \"front\"") == 0, "%s", c.camera.device_id);
    /* No key left at its default: the file exercises every row. */
    maad_config def;
    maad_config_defaults(&def);
    check_none_at_default(dump(&def), dump(&c));
}

static void test_relative_paths(void)
{
    char dir[128], path[192], err[MAA_ERRLEN] = "", want[256];
    snprintf(dir, sizeof dir, "%s/site", tmpdir);
    CHECK(mkdir(dir, 0700) == 0);
    static const char text[] = "camera:\n  name: cam0\n  source: replay\n"
                               "model:\n  path: models/m.st\n  calibration: ./c.json\n"
                               "replay:\n  dir: /abs/frames\n";
    write_file("site/maad.yaml", text, sizeof text - 1);
    maad_config c;
    snprintf(path, sizeof path, "%s/maad.yaml", dir);
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    snprintf(want, sizeof want, "%s/models/m.st", dir);
    CHECK(strcmp(c.model.path, want) == 0, "%s", c.model.path);
    snprintf(want, sizeof want, "%s/c.json", dir);
    CHECK(strcmp(c.model.calibration, want) == 0, "%s", c.model.calibration);
    CHECK(strcmp(c.replay.dir, "/abs/frames") == 0, "%s", c.replay.dir);

    /* A relative config path: resolved against the working directory too, so
     * the result does not depend on where the daemon later runs. */
    static const char text2[] = "camera: {name: cam0, source: replay}\n"
                                "model: {path: m.st, calibration: c.json}\n"
                                "replay: {dir: frames}\n";
    write_file("site/rel.yaml", text2, sizeof text2 - 1);
    char cwd[200];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(tmpdir) == 0);
    int rc = maad_config_load("site/rel.yaml", &c, err, sizeof err);
    char here[200];
    CHECK(getcwd(here, sizeof here) != NULL);
    CHECK(chdir(cwd) == 0);
    CHECK(rc == MAA_OK, "%s", err);
    snprintf(want, sizeof want, "%s/site/frames", here);
    CHECK(strcmp(c.replay.dir, want) == 0, "%s vs %s", c.replay.dir, want);
    snprintf(want, sizeof want, "%s/site/m.st", here);
    CHECK(strcmp(c.model.path, want) == 0, "%s vs %s", c.model.path, want);
}

static void test_example_file(void)
{
    char *doc = capture(maad_config_write_doc);
    check_generated("config/maad.example.yaml", doc, "build/tests/maad.example.yaml");
    const char *path = write_file("example.yaml", doc, strlen(doc));
    maad_config c, want;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    maad_config_defaults(&want);
    strcpy(want.camera.name, c.camera.name);
    strcpy(want.model.path, c.model.path);
    strcpy(want.model.calibration, c.model.calibration);
    CHECK(memcmp(&c, &want, sizeof c) == 0, "the example does not load as the defaults");
    CHECK(maad_config_load("config/maad.example.yaml", &c, err, sizeof err) == MAA_OK, "%s", err);
    /* Every key appears, commented out or not. */
    maad_config_defaults(&want);
    char *d = dump(&want);
    check_every_key_shown(d, doc);
    free(d);
    free(doc);
}

static void test_docs_table(void)
{
    check_docs_table("docs/config.md", "maad_config_write_table()", maad_config_write_table,
                     "build/tests/config-table.md");
}

static void test_null_section_and_booleans(void)
{
    static const char text[] = REQ "replay:\npublish: ~\nlog:\n  level: warning\n"
                                   "engine: {threads: 0}\n";
    const char *path = write_file("null.yaml", text, sizeof text - 1);
    maad_config c;
    char err[MAA_ERRLEN] = "";
    CHECK(maad_config_load(path, &c, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(c.log.level == MAAD_CFG_LOG_WARNING);
    static const char text2[] = REQ "replay: {loop: true}\ncamera2: 1\n";
    expect_error(text2, "7:1: unknown section 'camera2' (did you mean 'camera'?)");
}

/* The C enums in config.h and the names in the key table are in one order. */
static void test_enum_names(void)
{
    static const struct {
        const char *key;
        int value;
        const char *name;
    } cases[] = {
        {"camera.source", MAAD_SOURCE_ARAVIS, "aravis"},
        {"camera.source", MAAD_SOURCE_REPLAY, "replay"},
        {"camera.pixel_format", MAAD_PIX_MONO8, "Mono8"},
        {"camera.pixel_format", MAAD_PIX_RGB8, "RGB8"},
        {"camera.pixel_format", MAAD_PIX_BAYER_RG8, "BayerRG8"},
        {"camera.pixel_format", MAAD_PIX_BAYER_GR8, "BayerGR8"},
        {"camera.pixel_format", MAAD_PIX_BAYER_GB8, "BayerGB8"},
        {"camera.pixel_format", MAAD_PIX_BAYER_BG8, "BayerBG8"},
        {"camera.trigger", MAAD_TRIGGER_FREE, "free"},
        {"camera.trigger", MAAD_TRIGGER_SOFTWARE, "software"},
        {"camera.trigger", MAAD_TRIGGER_HARDWARE, "hardware"},
        {"engine.backend", MAAD_BACKEND_AUTO, "auto"},
        {"engine.backend", MAAD_BACKEND_REF, "ref"},
        {"engine.backend", MAAD_BACKEND_CPU, "cpu"},
        {"engine.backend", MAAD_BACKEND_CUDA, "cuda"},
        {"engine.precision", MAAD_PREC_DEFAULT, "default"},
        {"engine.precision", MAAD_PREC_F32, "f32"},
        {"engine.precision", MAAD_PREC_F16, "f16"},
        {"engine.precision", MAAD_PREC_BF16, "bf16"},
        {"mask.format", MAAD_CFG_MASK_PNG, "png"},
        {"mask.format", MAAD_CFG_MASK_RAW, "raw"},
        {"mask.format", MAAD_CFG_MASK_NONE, "none"},
        {"log.level", MAAD_CFG_LOG_DEBUG, "debug"},
        {"log.level", MAAD_CFG_LOG_INFO, "info"},
        {"log.level", MAAD_CFG_LOG_NOTICE, "notice"},
        {"log.level", MAAD_CFG_LOG_WARNING, "warning"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = maad_config_enum_name(cases[i].key, cases[i].value);
        CHECK(got && strcmp(got, cases[i].name) == 0, "%s %d: %s", cases[i].key, cases[i].value,
              got ? got : "NULL");
    }
    /* The daemon hands these to the engine by value. */
    for (int v = MAAD_BACKEND_AUTO; v <= MAAD_BACKEND_CUDA; v++)
        CHECK(strcmp(maad_config_enum_name("engine.backend", v),
                     maa_backend_name((maa_backend_kind)v)) == 0, "backend %d", v);
    for (int v = MAAD_PREC_DEFAULT; v <= MAAD_PREC_BF16; v++)
        CHECK(strcmp(maad_config_enum_name("engine.precision", v),
                     maa_precision_name((maa_precision)v)) == 0, "precision %d", v);
    CHECK(maad_config_enum_name("log.level", MAAD_CFG_LOG_WARNING + 1) == NULL);
    CHECK(maad_config_enum_name("log.level", -1) == NULL);
    CHECK(maad_config_enum_name("camera.width", 0) == NULL);
    CHECK(maad_config_enum_name("level", 0) == NULL);
    CHECK(maad_config_enum_name("camera.levelx", 0) == NULL);
}

/* Which models can judge which cameras' frames: a mono model no colour
 * camera's, in maad's own words; a colour model every camera's. */
static void test_check_channels(void)
{
    maad_camera_config cam = {.pixel_format = MAAD_PIX_MONO8};
    char err[512] = "";
    CHECK(maad_pixel_format_channels(MAAD_PIX_MONO8) == 1);
    CHECK(maad_config_check_channels(&cam, 1, "m1", err, sizeof err) == MAA_OK, "%s", err);
    CHECK(maad_config_check_channels(&cam, 3, "m3", err, sizeof err) == MAA_OK, "%s", err);
    for (int f = MAAD_PIX_RGB8; f <= MAAD_PIX_BAYER_BG8; f++) {
        cam.pixel_format = (maad_pixel_format)f;
        CHECK(maad_pixel_format_channels(cam.pixel_format) == 3, "format %d", f);
        CHECK(maad_config_check_channels(&cam, 3, "m3", err, sizeof err) == MAA_OK, "%s", err);
        CHECK(maad_config_check_channels(&cam, 1, "m1", err, sizeof err) == MAA_ERR, "format %d", f);
    }
    cam.pixel_format = MAAD_PIX_BAYER_RG8;
    maad_config_check_channels(&cam, 1, "/var/lib/maad/m1.safetensors", err, sizeof err);
    CHECK(!strcmp(err, "camera.pixel_format BayerRG8 gives colour frames, but the model "
                       "/var/lib/maad/m1.safetensors is mono (1 channel); use Mono8 or a "
                       "3-channel model"), "%s", err);
}

int main(void)
{
    if (make_tmpdir("test_config"))
        return 1;
    RUN(test_yaml_syntax_errors);
    RUN(test_yaml_limits);
    RUN(test_empty_and_top_level);
    RUN(test_unknown_names);
    RUN(test_wrong_types);
    RUN(test_out_of_range);
    RUN(test_bad_enum);
    RUN(test_duplicates);
    RUN(test_missing_required);
    RUN(test_non_mapping_section);
    RUN(test_strings);
    RUN(test_cross_key_rules);
    RUN(test_unreadable_file);
    RUN(test_defaults_for_absent_keys);
    RUN(test_camera_defaults);
    RUN(test_full_file);
    RUN(test_relative_paths);
    RUN(test_example_file);
    RUN(test_docs_table);
    RUN(test_null_section_and_booleans);
    RUN(test_enum_names);
    RUN(test_check_channels);
    remove_tmpdir();
    return CHECK_SUMMARY();
}

/* plc.c — maa-plc's configuration file (docs/plc.md): its key table, its
 * rules between keys, and the maa_plc_config_* functions over them.  The
 * loader is schema.c's, maad's own; the log section is maad's rows
 * (cfg_log_keys). */
#include "config/config.h"

#include <stdbool.h>
#include <string.h>

#include "config/schema.h"
#include "engine/engine.h"

static const cfg_key line_keys[] = {
    CFG_STR(maa_plc_line_config, name, "line", NULL, F_IDENT, "Names the line in the log."),
    CFG_INT(maa_plc_line_config, deadline_ms, 1, 600000, "2000", 0,
            "A verdict not in by its frame's capture time + this is missing: the part is "
            "rejected."),
    CFG_DBL(maa_plc_line_config, sync_tolerance_ms, 0.1, 10000, "5",
            "Capture times of one line step differ by at most this across the cameras (used to "
            "synchronise a camera)."),
    CFG_INT(maa_plc_line_config, heartbeat_timeout_ms, 100, 60000, "800", 0,
            "No message from a camera's maad for this long: that camera is down."),
    CFG_STR(maa_plc_line_config, curve_key, "", "/etc/maad/keys/maa-plc.key_secret", F_PATH,
            "maa-plc's CURVE certificate with its secret key (maa keygen), for the cameras "
            "with a server_key; its NAME.key goes into each maad's publish.curve_clients."),
    CFG_END,
};

/* 65526: the mailbox's 10 registers end at 65535, the last address. */
static const cfg_key bus_keys[] = {
    CFG_STR(maa_plc_bus_config, address, NULL, "192.168.0.10", F_REQUIRED | F_NONEMPTY,
            "Host name or IPv4 address of the PLC, the Modbus TCP server."),
    CFG_INT(maa_plc_bus_config, port, 1, 65535, "502", 0, "TCP port of the PLC's Modbus server."),
    CFG_INT(maa_plc_bus_config, unit_id, 0, 255, "1", 0,
            "Modbus unit identifier of the PLC: 0..247, or 255 (none)."),
    CFG_INT(maa_plc_bus_config, mailbox_register, 0, 65526, "0", 0,
            "First of the 10 holding registers of the result mailbox (0-based PDU address)."),
    CFG_INT(maa_plc_bus_config, healthy_coil, 0, 65535, "0", 0,
            "Coil held at 1 while every camera and its maad inspect, 0 while the inspection is "
            "blind."),
    CFG_INT(maa_plc_bus_config, reject_coil, 0, 65535, "1", 0,
            "Coil pulsed for every rejected part when pulse_delay_ms > 0; not healthy_coil."),
    CFG_INT(maa_plc_bus_config, response_timeout_ms, 1, 60000, "200", 0,
            "Longest wait for the PLC's answer to one Modbus request."),
    CFG_INT(maa_plc_bus_config, ack_timeout_ms, 1, 600000, "1000", 0,
            "The PLC not acknowledging a result for this long is logged (results keep queueing)."),
    CFG_INT(maa_plc_bus_config, health_period_ms, 10, 10000, "100", 0,
            "Period of the health word's increment and of the healthy coil's write."),
    CFG_INT(maa_plc_bus_config, reconnect_min_ms, 10, 60000, "100", 0,
            "First delay before reconnecting to the PLC."),
    CFG_INT(maa_plc_bus_config, reconnect_max_ms, 100, 600000, "5000", 0,
            "Longest delay between reconnections; >= reconnect_min_ms."),
    CFG_INT(maa_plc_bus_config, queue, 1, 1000000, "4096", 0,
            "Results held while the PLC does not take them; when full, the oldest is pushed out, "
            "logged late."),
    CFG_INT(maa_plc_bus_config, late_ms, 0, 600000, "0", 0,
            "A result whose part was captured longer ago than this is not written, only counted "
            "and logged late; 0 = never late."),
    CFG_INT(maa_plc_bus_config, pulse_delay_ms, 0, 600000, "0", 0,
            "Delay from a rejected part's capture at the first camera to its pulse on "
            "reject_coil; 0 = no reject pulse."),
    CFG_INT(maa_plc_bus_config, pulse_width_ms, 1, 60000, "50", 0,
            "Length of the reject pulse; overlapping pulses merge."),
    CFG_BOOL(maa_plc_bus_config, dry_run, "false",
             "Log the decisions and never connect to the PLC (also maa-plc --dry-run)."),
    CFG_END,
};

static const cfg_key camera_keys[] = {
    CFG_STR(maa_plc_camera_config, name, NULL, NULL, F_REQUIRED | F_IDENT,
            "The camera's maad, by its camera.name: its verdicts come on topic maad.<name>."),
    CFG_STR(maa_plc_camera_config, endpoint, NULL, NULL, F_REQUIRED | F_NONEMPTY,
            "ZeroMQ endpoint of that maad's verdicts: its publish.endpoint as seen from here."),
    CFG_INT(maa_plc_camera_config, offset, 0, 10000, "0", 0,
            "Line steps from the first camera of the line (offset 0) to this one."),
    CFG_STR(maa_plc_camera_config, server_key, "", NULL, F_PATH,
            "That maad's public CURVE certificate (its NAME.key) when it runs CURVE; empty = "
            "plain mode."),
    CFG_END,
};

/* The example file's line: three cameras at three stations in a row. */
static const maa_plc_camera_config example_cameras[] = {
    {"groove", "tcp://127.0.0.1:5555", 0, ""},
    {"cylinder", "tcp://127.0.0.1:5556", 1, ""},
    {"hook", "tcp://127.0.0.1:5557", 2, ""},
};

#define CAMERAS_MAX (sizeof((maa_plc_config *)0)->cameras / sizeof(maa_plc_camera_config))

static const cfg_section sections[] = {
    {.name = "line", .keys = line_keys, .off = offsetof(maa_plc_config, line)},
    {.name = "plc", .keys = bus_keys, .off = offsetof(maa_plc_config, plc)},
    {.name = "cameras",
     .keys = camera_keys,
     .off = offsetof(maa_plc_config, cameras),
     .min = 1,
     .max = CAMERAS_MAX,
     .stride = sizeof(maa_plc_camera_config),
     .count_off = offsetof(maa_plc_config, ncameras),
     .examples = example_cameras,
     .nexamples = sizeof example_cameras / sizeof example_cameras[0],
     .doc = "One entry per maad, in the order of the register map's camera bits; unique names, "
            "the first camera of the line at offset 0."},
    {.name = "log", .keys = cfg_log_keys, .off = offsetof(maa_plc_config, log)},
};

static int check_rules(cfg_loader *L, const void *config)
{
    const maa_plc_config *c = config;
    bool first = false;
    for (int i = 0; i < c->ncameras; i++) {
        /* Verdicts are told apart by camera name (the topic): two entries
         * of one name would both take every verdict of that maad. */
        for (int j = 0; j < i; j++)
            if (strcmp(c->cameras[i].name, c->cameras[j].name) == 0) {
                yaml_mark_t at = cfg_mark(L, "cameras", (size_t)j, "name");
                return cfg_fail(L, cfg_mark(L, "cameras", (size_t)i, "name"),
                                "duplicate camera name %s (first at %zu:%zu)",
                                c->cameras[i].name, at.line + 1, at.column + 1);
            }
        first = first || c->cameras[i].offset == 0;
        if (c->cameras[i].server_key[0] && !c->line.curve_key[0])
            return cfg_fail(L, cfg_mark(L, "cameras", (size_t)i, "server_key"),
                            "camera %s has a server_key (CURVE) but line.curve_key, maa-plc's "
                            "own certificate, is not set", c->cameras[i].name);
    }
    /* Part numbers count the line steps at offset 0: a line without a
     * camera there has no first station to number its parts by. */
    if (!first)
        return cfg_fail(L, cfg_section_mark(L, "cameras"),
                        "no camera has offset 0 (the first camera of the line has offset 0)");
    if (cfg_check_order(L, c, "plc", "reconnect_min_ms", "reconnect_max_ms") != MAA_OK)
        return MAA_ERR;
    /* Modbus reserves 248..254; libmodbus refuses them. */
    if (c->plc.unit_id > 247 && c->plc.unit_id < 255)
        return cfg_fail(L, cfg_mark(L, "plc", 0, "unit_id"),
                        "plc.unit_id %d is reserved by Modbus (use 0..247, or 255)",
                        c->plc.unit_id);
    /* One coil cannot say both: each reject pulse would clear the healthy
     * signal, and the PLC read a blind inspection after every reject. */
    if (c->plc.pulse_delay_ms > 0 && c->plc.healthy_coil == c->plc.reject_coil)
        return cfg_fail(L,
                        cfg_mark(L, "plc", 0,
                                 cfg_seen(L, "plc", 0, "reject_coil") ? "reject_coil"
                                                                      : "healthy_coil"),
                        "plc.reject_coil (%d) is also plc.healthy_coil; with "
                        "plc.pulse_delay_ms > 0 the reject pulse needs a coil of its own",
                        c->plc.reject_coil);
    return MAA_OK;
}

static const cfg_schema plc_schema = {
    .sections = sections,
    .nsections = sizeof sections / sizeof sections[0],
    .size = sizeof(maa_plc_config),
    .outline = "line:, plc:, cameras:, ...",
    .doc_header = "# maa-plc configuration: every key with its default, and a line of three\n"
                  "# cameras as the example of the cameras list.\n"
                  "# Written by maa_plc_config_write_doc() (config/plc.c); do not edit by\n"
                  "# hand, change the key table and regenerate.  See docs/plc.md.\n",
    .check = check_rules,
};

void maa_plc_config_defaults(maa_plc_config *c) { cfg_defaults(&plc_schema, c); }

int maa_plc_config_load(const char *path, maa_plc_config *c, char *err, size_t errlen)
{
    return cfg_load(&plc_schema, path, c, err, errlen);
}

void maa_plc_config_dump(const maa_plc_config *c, FILE *f) { cfg_dump(&plc_schema, c, f); }

void maa_plc_config_write_doc(FILE *f) { cfg_write_doc(&plc_schema, f); }

void maa_plc_config_write_table(FILE *f) { cfg_write_table(&plc_schema, f); }

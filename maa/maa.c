/* maa.c — the offline tool: `maa COMMAND [OPTIONS]`. */
#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"
#include "maa/maa.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"infer", maa_cmd_infer, "score images (JSON lines), with verdicts and masks given a calibration"},
    {"model-info", maa_cmd_model_info, "print a model file's metadata, tensor and parameter counts"},
    {"calibrate", maa_cmd_calibrate, "fit the threshold and the mask on images of good parts"},
    {"eval", maa_cmd_eval, "measure detection on a labelled set (MVTec AD layout)"},
    {"compare", maa_cmd_compare, "a candidate model against the running one: deploy or keep"},
    {"watch", maa_cmd_watch, "follow a maad verdict stream (ZeroMQ)"},
    {"keygen", maa_cmd_keygen, "make a CURVE key pair for the verdict socket"},
    {"review", maa_cmd_review, "an archive's rejects as a page or a contact sheet, masks over them"},
    {"archive", maa_cmd_archive, "an archive's records: list, mark good or defective, export to train"},
    {"fakecam", maa_cmd_fakecam, "serve a directory of images as a fake GigE Vision camera"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: maa COMMAND [OPTIONS]   (maa COMMAND --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "maa: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}

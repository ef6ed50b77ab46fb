/* split.c — the split file train.py writes beside a model (docs/training.md):
 * which images of its train/good folder it held out and, by content, which
 * it trained on.  maa calibrate calibrates on the held-out ones and warns
 * about trained ones; maa compare refuses a candidate scored on images it
 * trained on. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maa/maa.h"

char *maa_cli_split_path(const char *model)
{
    const char *dot = strrchr(model, '.'), *slash = strrchr(model, '/');
    size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - model) : strlen(model);
    char *path;
    return asprintf(&path, "%.*s.split.json", (int)stem, model) < 0 ? NULL : path;
}

void maa_cli_split_free(maa_cli_split *sp)
{
    json_decref(sp->doc);
    g_free(sp->dir);
    memset(sp, 0, sizeof *sp);
}

int maa_cli_split_load(const char *who, const char *path, maa_cli_split *sp)
{
    memset(sp, 0, sizeof *sp);
    if (!g_file_test(path, G_FILE_TEST_EXISTS))
        return 1;
    json_error_t je;
    sp->doc = json_load_file(path, 0, &je);
    if (!sp->doc) {
        fprintf(stderr, "%s: %s: not a split file: %s (line %d)\n", who, path, je.text, je.line);
        return -1;
    }
    const char *format = json_string_value(json_object_get(sp->doc, "format"));
    const char *images = json_string_value(json_object_get(sp->doc, "images"));
    if (images) {
        gchar *base = g_path_get_dirname(path);
        sp->dir = g_path_is_absolute(images) ? g_strdup(images)
                                             : g_build_filename(base, images, NULL);
        g_free(base);
    }
    sp->held = json_object_get(sp->doc, "held_out");
    sp->trained = json_object_get(sp->doc, "trained");
    const char *bad = !format || strcmp(format, "maa-split") ? "format is not \"maa-split\""
                      : !sp->dir                             ? "no \"images\" folder"
                      : !json_is_array(sp->held)             ? "no \"held_out\" list"
                      : !json_is_array(sp->trained)          ? "no \"trained\" list"
                                                             : NULL;
    for (size_t i = 0; !bad && i < json_array_size(sp->held) + json_array_size(sp->trained); i++) {
        size_t nh = json_array_size(sp->held);
        json_t *e = i < nh ? json_array_get(sp->held, i) : json_array_get(sp->trained, i - nh);
        const char *f = json_string_value(json_object_get(e, "file"));
        const char *h = json_string_value(json_object_get(e, "sha256"));
        if (!f || !*f || strchr(f, '/') || !h || strlen(h) != 64)
            bad = "an entry without a plain \"file\" name and a \"sha256\"";
    }
    if (bad) {
        fprintf(stderr, "%s: %s: %s\n", who, path, bad);
        maa_cli_split_free(sp);
        return -1;
    }
    return 0;
}

int maa_cli_file_sha256(const char *who, const char *path, char hex[65])
{
    gchar *buf;
    gsize len;
    GError *ge = NULL;
    if (!g_file_get_contents(path, &buf, &len, &ge)) {
        fprintf(stderr, "%s: %s\n", who, ge->message);
        g_error_free(ge);
        return MAA_ERR;
    }
    char *h = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)buf, len);
    g_free(buf);
    snprintf(hex, 65, "%s", h);
    g_free(h);
    return MAA_OK;
}

int maa_cli_split_find(const char *who, const maa_cli_split *sp, const char *path)
{
    char sha[65];
    if (maa_cli_file_sha256(who, path, sha))
        return -1;
    const json_t *lists[] = {sp->trained, sp->held};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < json_array_size(lists[k]); i++) {
            json_t *e = json_array_get(lists[k], i);
            if (strcmp(json_string_value(json_object_get(e, "sha256")), sha) == 0)
                return k == 0 ? MAA_SPLIT_TRAINED : MAA_SPLIT_HELD_OUT;
        }
    return MAA_SPLIT_NONE;
}

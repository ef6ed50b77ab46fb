/* review.c — `maa review DIR`: the archived frames of a shift for a person
 * to look through, newest first, each with its mask in red over it and why
 * it was kept: one HTML page that opens from disk (every picture inside it,
 * a filter in a few lines of script), or a PNG contact sheet.
 *
 * The mask is laid over the frame here, at thumbnail size, and the page
 * carries that one small picture per record: a frame at camera resolution
 * and its mask as two pictures blended by the browser would make a shift's
 * page tens of megabytes, and the sheet's tiles are the same pictures.  The
 * sheet's grid and captions are drawn by scripts/plot_review.py (text in C
 * would need a font of its own). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maa/maa.h"

static const char who[] = "maa review";

static const char usage[] =
    "usage: maa review DIR [-o PAGE.html] [--png SHEET.png] [options]\n"
    "The frames maad archived in DIR (archive.dir), newest first, each with its\n"
    "defect mask in red over it, its verdict, reason, score against the threshold,\n"
    "evidence, regions, capture time, model and record name: as one HTML page that\n"
    "opens from disk (pictures inside it; filter by verdict, reason and mark in the\n"
    "page), or as a PNG contact sheet.  Without -o or --png: -o review.html.\n"
    "Records that cannot be read are named on stderr and left out.\n\n"
    "  -o, --html PAGE    the page\n"
    "  --png SHEET        the contact sheet (drawn by scripts/plot_review.py)\n"
    "  --thumb N          pictures at most N pixels wide or high (default 256)\n"
    MAA_CLI_RECORD_HELP
    "                     (default: the newest 200 on the page, 48 on the sheet)\n";

#define PAGE_LIMIT 200
#define SHEET_LIMIT 48

/* ---- text ---------------------------------------------------------------- */

static void put_escaped(FILE *f, const char *s)
{
    for (; s && *s; s++)
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
}

static void put_base64(FILE *f, const uint8_t *p, size_t n)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        fputc(t[v >> 18 & 63], f);
        fputc(t[v >> 12 & 63], f);
        fputc(i + 1 < n ? t[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? t[v & 63] : '=', f);
    }
}

/* "0.00883 / T 0.00751 (1.18 T)", or "none" for a frame not judged. */
static void score_text(const maa_cli_record *r, char *buf, size_t n)
{
    double s = maa_cli_record_number(r, "score"), t = maa_cli_record_number(r, "threshold");
    if (isnan(s))
        snprintf(buf, n, "none");
    else if (isfinite(t) && t > 0)
        snprintf(buf, n, "%.4g / T %.4g (%.2f T)", s, t, s / t);
    else
        snprintf(buf, n, "%.4g", s);
}

/* "score, mask", or "none". */
static void evidence_text(const maa_cli_record *r, char *buf, size_t n)
{
    json_t *ev = json_object_get(r->doc, "evidence"), *v;
    size_t i, k = 0;
    buf[0] = 0;
    json_array_foreach(ev, i, v)
        if (json_is_string(v))
            k += (size_t)snprintf(buf + k, k < n ? n - k : 0, "%s%s", k ? ", " : "",
                                  json_string_value(v));
    if (!buf[0])
        snprintf(buf, n, "none");
}

/* Up to `most` regions as "88x13 at (20,64), 352 px", in camera pixels. */
static void regions_text(const maa_cli_record *r, int most, char *buf, size_t n)
{
    json_t *d = json_object_get(r->doc, "defects"), *v;
    size_t i, k = 0;
    buf[0] = 0;
    json_array_foreach(d, i, v) {
        if ((int)i == most) {
            snprintf(buf + k, k < n ? n - k : 0, "; %zu more", json_array_size(d) - i);
            break;
        }
        json_int_t x = json_integer_value(json_object_get(v, "cx"));
        json_int_t y = json_integer_value(json_object_get(v, "cy"));
        json_int_t w = json_integer_value(json_object_get(v, "cw"));
        json_int_t h = json_integer_value(json_object_get(v, "ch"));
        json_int_t a = json_integer_value(json_object_get(v, "area"));
        k += (size_t)snprintf(buf + k, k < n ? n - k : 0,
                              "%s%" JSON_INTEGER_FORMAT "x%" JSON_INTEGER_FORMAT
                              " at (%" JSON_INTEGER_FORMAT ",%" JSON_INTEGER_FORMAT "), %"
                              JSON_INTEGER_FORMAT " px", i ? "; " : "", w, h, x, y, a);
    }
    if (!buf[0])
        snprintf(buf, n, "none");
}

/* The first 12 hex digits of the model's SHA-256, as maad's log shows it. */
static void model_text(const maa_cli_record *r, char *buf, size_t n)
{
    const char *m = maa_cli_record_string(r, "model");
    snprintf(buf, n, "%.12s", m ? m : "?");
}

/* ---- the page ------------------------------------------------------------ */

static const char style[] =
    "body{font:13px sans-serif;margin:12px;background:#f4f4f4;color:#222}"
    "h1{font-size:18px;margin:0 0 4px}p{margin:3px 0}"
    "#bar{position:sticky;top:0;background:#f4f4f4;padding:6px 0;border-bottom:1px solid #ccc}"
    "#cards{display:flex;flex-wrap:wrap;gap:8px;margin-top:8px}"
    ".card{background:#fff;border:1px solid #bbb;border-left:5px solid #888;padding:5px;"
    "width:264px;font-size:11.5px;line-height:1.35}"
    ".reject{border-left-color:#c0392b}.uninspected{border-left-color:#d68910}"
    ".pass{border-left-color:#1e8449}"
    ".card img{display:block;width:256px;image-rendering:pixelated;margin-bottom:3px}"
    ".noimg{width:256px;height:64px;background:#ddd;display:flex;align-items:center;"
    "justify-content:center;text-align:center;margin-bottom:3px}"
    ".why{font-weight:bold;text-transform:uppercase}.stem{font:10px monospace;color:#555;"
    "word-break:break-all}.mark{font-weight:bold;color:#1e8449}.mark.defective{color:#c0392b}"
    "#cmd{font:11px monospace;white-space:pre-wrap;word-break:break-all}";

/* The filter reads the page's own data attributes; it starts from the
 * address's #why=...&reason=...&mark=... so a link can open it filtered. */
static const char script[] =
    "var q=new URLSearchParams(location.hash.slice(1));"
    "['why','reason','mark'].forEach(function(k){if(q.has(k))document.getElementById(k).value=q.get(k)});"
    "function apply(){var w=document.getElementById('why').value,"
    "r=document.getElementById('reason').value.toLowerCase(),"
    "m=document.getElementById('mark').value,n=0;"
    "document.querySelectorAll('.card').forEach(function(c){"
    "var ok=(!w||c.dataset.why==w)&&c.dataset.reason.toLowerCase().indexOf(r)>=0&&"
    "(!m||c.dataset.mark==(m=='none'?'':m));c.style.display=ok?'':'none';n+=ok});"
    "document.getElementById('shown').textContent=n}"
    /* the directory quoted for the shell unless it is plain */
    "function picked(){var s=[],d=document.body.dataset.dir;"
    "if(/[^\\w\\/.,:+-]/.test(d))d=\"'\"+d.replace(/'/g,\"'\\\\''\")+\"'\";"
    "document.querySelectorAll('.pick:checked').forEach(function(b){s.push(b.value)});"
    "document.getElementById('cmd').textContent=s.length?'maa archive mark '+d+' '+"
    "s.join(' ')+' --'+document.getElementById('as').value:''}"
    "document.querySelectorAll('select,input').forEach(function(e){"
    "e.oninput=e.onchange=function(){apply();picked()}});apply();";

/* A thumbnail as PNG with libspng's default row filters and deflate level:
 * a photograph's rows compress about a quarter better filtered, and unlike
 * maad's masks (maa_png_encode) a page encodes each picture once. */
static int encode_thumbnail(const maa_image *im, void **buf, size_t *len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ih = {.width = (uint32_t)im->width, .height = (uint32_t)im->height,
                           .bit_depth = 8, .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    int r = ctx ? spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1) : SPNG_EMEM;
    if (!r)
        r = spng_set_ihdr(ctx, &ih);
    if (!r)
        r = spng_encode_image(ctx, im->data, (size_t)im->width * im->height * 3, SPNG_FMT_PNG,
                              SPNG_ENCODE_FINALIZE);
    *buf = r ? NULL : spng_get_png_buffer(ctx, len, &r);
    spng_ctx_free(ctx);
    return *buf ? MAA_OK : MAA_ERR;
}

static void card(FILE *f, const maa_cli_record *r, int side)
{
    char err[MAA_ERRLEN + 256], score[96], ev[64], regions[256], model[16];
    maa_image th;
    void *png = NULL;
    size_t len = 0;
    int have = maa_cli_record_thumbnail(r, side, &th, err, sizeof err) == MAA_OK;
    /* a frame that never came is no error of the archive: the card says it */
    if (err[0] && r->frame)
        fprintf(stderr, "%s: %s; shown without %s\n", who, err, have ? "its mask" : "a picture");
    if (have && encode_thumbnail(&th, &png, &len)) {
        fprintf(stderr, "%s: %s: cannot encode its thumbnail\n", who, r->frame);
        have = 0;
    }
    maa_image_free(&th);
    const char *reason = maa_cli_record_string(r, "reason");
    fprintf(f, "<div class=\"card %s\" data-why=\"%s\" data-mark=\"%s\" data-reason=\"", r->why,
            r->why, r->label ? r->label : "");
    put_escaped(f, reason);
    fputs("\">", f);
    if (have) {
        fputs("<img alt=\"frame and mask\" src=\"data:image/png;base64,", f);
        put_base64(f, png, len);
        fputs("\">", f);
    } else {
        fputs("<div class=\"noimg\">", f);
        put_escaped(f, r->frame ? "frame unreadable (see maa review's messages)"
                                : "no frame: it never arrived");
        fputs("</div>", f);
    }
    free(png);
    score_text(r, score, sizeof score);
    evidence_text(r, ev, sizeof ev);
    regions_text(r, 4, regions, sizeof regions);
    model_text(r, model, sizeof model);
    const char *cam = maa_cli_record_string(r, "camera");
    json_t *seq = json_object_get(r->doc, "seq");
    fprintf(f, "<span class=\"why\">%s</span> %s", r->why, r->when);
    if (r->label)
        fprintf(f, " <span class=\"mark %s\">marked %s</span>", r->label, r->label);
    fputs("<br>", f);
    put_escaped(f, reason);
    fprintf(f, "<br>score %s", score);
    double peak = maa_cli_record_number(r, "mask_peak");
    double tpix = maa_cli_record_number(r, "mask_threshold");
    if (!isnan(peak) && !isnan(tpix))
        fprintf(f, "<br>mask peak %.4g / T_pix %.4g", peak, tpix);
    fprintf(f, "<br>evidence %s; rule ", ev);
    put_escaped(f, maa_cli_record_string(r, "rule") ? maa_cli_record_string(r, "rule") : "none");
    fputs("<br>regions (camera px): ", f);
    put_escaped(f, regions);
    fputs("<br>camera ", f);
    put_escaped(f, cam ? cam : "?");
    if (json_is_integer(seq))
        fprintf(f, ", seq %" JSON_INTEGER_FORMAT, json_integer_value(seq));
    fputs(", model ", f);
    put_escaped(f, model);
    fputs("<br><label><input type=\"checkbox\" class=\"pick\" value=\"", f);
    put_escaped(f, r->stem);
    fputs("\"> tick</label> <span class=\"stem\">", f);
    put_escaped(f, r->stem);
    fputs("</span></div>\n", f);
}

static int write_page(const char *path, const char *dir, const maa_cli_archive *a, int n,
                      int side, const char *filters)
{
    char *text = NULL, sum[256], now[32], err[MAA_ERRLEN];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        fprintf(stderr, "%s: out of memory for the page\n", who);
        return MAA_ERR;
    }
    time_t t = time(NULL);
    struct tm g;
    strftime(now, sizeof now, "%Y-%m-%d %H:%M UTC", gmtime_r(&t, &g));
    maa_cli_archive_summary(a, n, sum, sizeof sum);
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>maa review ", f);
    put_escaped(f, dir);
    fprintf(f, "</title><style>%s</style></head>\n<body data-dir=\"", style);
    put_escaped(f, dir);
    fputs("\"><div id=\"bar\"><h1>maa review ", f);
    put_escaped(f, dir);
    fprintf(f, "</h1><p id=\"summary\">%s", sum);
    if (a->matched > n)
        fprintf(f, " &mdash; the newest %d of the %d records taken", n, a->matched);
    fputs(".</p><p>", f);
    if (a->unreadable)
        fprintf(f, "<b>%d record%s could not be read</b> (maa review named them on stderr). ",
                a->unreadable, a->unreadable == 1 ? "" : "s");
    fprintf(f, "Made %s", now);
    if (filters[0]) {
        fputs(" with", f);
        put_escaped(f, filters);
    }
    fputs(".</p><p>verdict <select id=\"why\"><option value=\"\">all</option>"
          "<option>reject</option><option>uninspected</option><option>pass</option></select> "
          "reason contains <input id=\"reason\" size=\"24\"> "
          "mark <select id=\"mark\"><option value=\"\">any</option><option value=\"none\">none"
          "</option><option>good</option><option>defective</option></select> "
          "&mdash; <span id=\"shown\"></span> shown.  The command that marks the ticked "
          "parts <select id=\"as\"><option>good</option><option>defective</option>"
          "<option>clear</option></select>:</p><div id=\"cmd\"></div></div>\n"
          "<div id=\"cards\">\n", f);
    for (int i = 0; i < n; i++)
        card(f, &a->rec[i], side);
    fprintf(f, "</div>\n<script>%s</script>\n</body></html>\n", script);
    if (fclose(f) || !text) {
        free(text);
        fprintf(stderr, "%s: out of memory for the page\n", who);
        return MAA_ERR;
    }
    int rc = maa_write_file(path, text, len, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: %s\n", who, err);
    else
        printf("%s: %s (%zu KiB)\n", path, sum, len >> 10);
    free(text);
    return rc;
}

/* ---- the sheet ----------------------------------------------------------- */

/* The thumbnails as PNG files in a temporary folder and a list of them with
 * their captions, for scripts/plot_review.py. */
static int write_sheet(const char *path, const char *dir, const maa_cli_archive *a, int n,
                       int side, const char *filters)
{
    char tmp[] = "/tmp/maa-review-XXXXXX", err[MAA_ERRLEN + 256], sum[256];
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "%s: cannot make a temporary folder: %s\n", who, strerror(errno));
        return MAA_ERR;
    }
    maa_cli_archive_summary(a, n, sum, sizeof sum);
    char title[PATH_MAX + 64], note[512];
    snprintf(title, sizeof title, "maa review %s", dir);
    size_t k = (size_t)snprintf(note, sizeof note, "%s", sum);
    if (a->matched > n && k < sizeof note)
        k += (size_t)snprintf(note + k, sizeof note - k, " (the newest of %d taken)",
                              a->matched);
    if (a->unreadable && k < sizeof note)
        k += (size_t)snprintf(note + k, sizeof note - k, "; %d unreadable", a->unreadable);
    if (filters[0] && k < sizeof note)
        snprintf(note + k, sizeof note - k, "; with%s", filters);
    json_t *tiles = json_array();
    json_t *doc = json_pack("{s:s,s:s,s:o}", "title", title, "note", note, "tiles", tiles);
    int rc = doc ? MAA_OK : MAA_ERR;
    for (int i = 0; rc == MAA_OK && i < n; i++) {
        const maa_cli_record *r = &a->rec[i];
        maa_image th;
        char png[sizeof tmp + 32] = "", score[96], regions[128], line[160];
        if (maa_cli_record_thumbnail(r, side, &th, err, sizeof err) == MAA_OK) {
            if (err[0])
                fprintf(stderr, "%s: %s; shown without its mask\n", who, err);
            snprintf(png, sizeof png, "%s/%06d.png", tmp, i);
            if (maa_png_write(png, th.data, th.width, th.height, 3, err, sizeof err)) {
                fprintf(stderr, "%s: %s\n", who, err);
                rc = MAA_ERR;
            }
        } else if (r->frame) {
            fprintf(stderr, "%s: %s; shown without a picture\n", who, err);
        }
        maa_image_free(&th);
        score_text(r, score, sizeof score);
        regions_text(r, 1, regions, sizeof regions);
        json_t *lines = json_array();
        snprintf(line, sizeof line, "%s %.18s%s%s", r->why, r->when + 5,
                 r->label ? ", marked " : "", r->label ? r->label : "");
        json_array_append_new(lines, json_string(line));
        json_array_append_new(lines, json_string(maa_cli_record_string(r, "reason")));
        snprintf(line, sizeof line, "score %s", score);
        json_array_append_new(lines, json_string(line));
        snprintf(line, sizeof line, "regions %s", regions);
        json_array_append_new(lines, json_string(line));
        json_array_append_new(lines, json_string(r->stem));
        if (json_array_append_new(tiles, json_pack("{s:s?,s:s,s:o}", "png", png[0] ? png : NULL,
                                                   "why", r->why, "lines", lines)))
            rc = MAA_ERR;
    }
    char list[sizeof tmp + 16];
    snprintf(list, sizeof list, "%s/tiles.json", tmp);
    if (rc == MAA_OK && (rc = maa_cli_write_json(who, doc, list)) == MAA_OK) {
        const char *args[] = {"--tiles", list, "--out", path, NULL};
        rc = maa_cli_run_script("plot_review.py", args);
        if (rc == MAA_OK)
            printf("%s: %s\n", path, sum);
        else
            fprintf(stderr, "%s: no sheet written\n", who);
    }
    for (int i = 0; i < n; i++) {
        char png[sizeof tmp + 32];
        snprintf(png, sizeof png, "%s/%06d.png", tmp, i);
        unlink(png);
    }
    unlink(list);
    rmdir(tmp);
    json_decref(doc);
    return rc;
}

int maa_cmd_review(int argc, char **argv)
{
    static const struct option opts[] = {
        MAA_CLI_RECORD_OPTIONS, {"html", 1, 0, 'o'}, {"png", 1, 0, 'p'},
        {"thumb", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    maa_cli_record_filter f = {0};
    const char *html = NULL, *png = NULL;
    long long side = 256;
    char filters[1024] = "";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        int r = maa_cli_record_option(who, &f, c, optarg);
        if (r < 0)
            return 2;
        if (r > 0) {
            /* the options as given, for the page's header */
            for (int i = 0; opts[i].name; i++)
                if (opts[i].val == c)
                    snprintf(filters + strlen(filters), sizeof filters - strlen(filters),
                             " --%s %s", opts[i].name, optarg);
            continue;
        }
        switch (c) {
        case 'o': html = optarg; break;
        case 'p': png = optarg; break;
        case 't':
            if (maa_cli_parse_integer(who, "thumb", optarg, 16, 2048, &side))
                return 2;
            break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "%s: one archive directory expected\n%s", who, usage);
        return 2;
    }
    const char *dir = argv[optind];
    if (!html && !png)
        html = "review.html";
    long long page_n = f.limit ? f.limit : PAGE_LIMIT, sheet_n = f.limit ? f.limit : SHEET_LIMIT;
    if (!f.limit)
        f.limit = html ? PAGE_LIMIT : SHEET_LIMIT;
    maa_cli_archive a;
    if (maa_cli_archive_read(who, dir, &f, &a))
        return 2;
    int rc = MAA_OK;
    if (html)
        rc |= write_page(html, dir, &a, (int)(a.n < page_n ? a.n : page_n), (int)side, filters);
    if (png)
        rc |= write_sheet(png, dir, &a, (int)(a.n < sheet_n ? a.n : sheet_n), (int)side,
                          filters);
    maa_cli_archive_free(&a);
    return rc ? 1 : 0;
}

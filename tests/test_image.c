/* test_image.c — image files and the input transform (contract §1).  Every
 * fixture is written here: PNGs byte by byte (stored deflate blocks, own
 * CRC and Adler-32) so that the decoder is checked against the format, not
 * against its own encoder; PNM and BMP likewise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"
#include "engine/pixel.h"
#include "tests/check.h"
#include "tests/preprocess_literal.h"

static char dir[] = "/tmp/test_image.XXXXXX";
static char err[MAA_ERRLEN];

static const char *fixture(const char *name)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void write_bytes(const char *name, const void *p, size_t n)
{
    FILE *f = fopen(fixture(name), "wb");
    CHECK(f && fwrite(p, 1, n, f) == n, "cannot write %s", name);
    if (f)
        fclose(f);
}

/* ---- a minimal PNG writer ------------------------------------------------ */

static uint32_t crc32(const uint8_t *p, size_t n, uint32_t c)
{
    c = ~c;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static size_t chunk(uint8_t *out, const char *type, const uint8_t *data,
                    uint32_t n)
{
    be32(out, n);
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    be32(out + 8 + n, crc32(out + 4, n + 4, 0));
    return 12 + n;
}

/* rows: h scanlines of w*bpp bytes (big-endian 16-bit samples), each gets
 * filter byte 0.  Returns the file size. */
static size_t make_png(uint8_t *out, int w, int h, int depth, int ctype,
                       const uint8_t *rows, size_t rowbytes,
                       const uint8_t *plte, int ncol)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    size_t n = 0;
    memcpy(out, sig, 8);
    n += 8;
    uint8_t ih[13] = {0};
    be32(ih, (uint32_t)w);
    be32(ih + 4, (uint32_t)h);
    ih[8] = (uint8_t)depth;
    ih[9] = (uint8_t)ctype;
    n += chunk(out + n, "IHDR", ih, 13);
    if (plte)
        n += chunk(out + n, "PLTE", plte, (uint32_t)ncol * 3);
    uint8_t raw[4096], z[4200];
    size_t rn = 0;
    for (int y = 0; y < h; y++) {
        raw[rn++] = 0;
        memcpy(raw + rn, rows + y * rowbytes, rowbytes);
        rn += rowbytes;
    }
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < rn; i++) {
        a = (a + raw[i]) % 65521;
        b = (b + a) % 65521;
    }
    size_t zn = 0;
    z[zn++] = 0x78, z[zn++] = 0x01;
    z[zn++] = 1;  /* final stored block */
    z[zn++] = (uint8_t)rn, z[zn++] = (uint8_t)(rn >> 8);
    z[zn++] = (uint8_t)~rn, z[zn++] = (uint8_t)(~rn >> 8);
    memcpy(z + zn, raw, rn);
    zn += rn;
    be32(z + zn, b << 16 | a);
    zn += 4;
    n += chunk(out + n, "IDAT", z, (uint32_t)zn);
    n += chunk(out + n, "IEND", NULL, 0);
    return n;
}

static int load(const char *name, maa_image *img)
{
    err[0] = 0;
    int rc = maa_image_load(fixture(name), img, err, sizeof err);
    CHECK(rc == MAA_OK, "%s", err);
    return rc == MAA_OK;
}

static void refused(const char *name, const char *msg)
{
    maa_image img;
    err[0] = 0;
    CHECK(maa_image_load(fixture(name), &img, err, sizeof err) == MAA_ERR,
          "%s accepted", name);
    CHECK(strstr(err, fixture(name)) && strstr(err, msg), "%s: '%s'", name, err);
    CHECK(img.data == NULL, "data left after an error");
}

static uint16_t px16(const maa_image *img, int i) { return ((uint16_t *)img->data)[i]; }
static uint8_t px8(const maa_image *img, int i) { return ((uint8_t *)img->data)[i]; }

static void test_png_8bit_via_writer(void)
{
    uint8_t g[6] = {0, 50, 100, 150, 200, 255}, rgb[18];
    for (int i = 0; i < 18; i++)
        rgb[i] = (uint8_t)(i * 13);
    CHECK(maa_png_write(fixture("g.png"), g, 3, 2, 1, err, sizeof err) == MAA_OK,
          "%s", err);
    CHECK(maa_png_write(fixture("rgb.png"), rgb, 3, 2, 3, err, sizeof err) == MAA_OK,
          "%s", err);
    maa_image img;
    if (load("g.png", &img)) {
        CHECK(img.width == 3 && img.height == 2 && img.channels == 1 &&
              img.depth == 8, "%dx%dx%d/%d", img.width, img.height,
              img.channels, img.depth);
        CHECK(memcmp(img.data, g, 6) == 0, "gray pixels differ");
        maa_image_free(&img);
    }
    if (load("rgb.png", &img)) {
        CHECK(img.channels == 3 && img.depth == 8, "%d/%d", img.channels, img.depth);
        CHECK(memcmp(img.data, rgb, 18) == 0, "rgb pixels differ");
        maa_image_free(&img);
    }
    void *buf = NULL;
    size_t len = 0;
    CHECK(maa_png_encode(g, 3, 2, 2, &buf, &len, err, sizeof err) == MAA_ERR,
          "2 channels accepted");
    CHECK(maa_png_encode(g, 3, 2, 1, &buf, &len, err, sizeof err) == MAA_OK &&
          len > 8 && memcmp(buf, "\x89PNG", 4) == 0, "%s", err);
    free(buf);
}

/* maa_png_write opened its path with fopen, so a link planted there (in
 * maa infer --masks's folder, say) had its target overwritten.  The PNG
 * now replaces the link. */
static void test_png_write_over_link(void)
{
    write_bytes("victim", "precious", 8);
    char victim[256];
    snprintf(victim, sizeof victim, "%s", fixture("victim"));
    CHECK(symlink(victim, fixture("linked.png")) == 0, "cannot make the link");
    uint8_t g[6] = {0, 50, 100, 150, 200, 255};
    CHECK(maa_png_write(fixture("linked.png"), g, 3, 2, 1, err, sizeof err) == MAA_OK,
          "%s", err);
    char text[16] = "";
    FILE *f = fopen(victim, "rb");
    CHECK(f && fread(text, 1, sizeof text, f) == 8 && !memcmp(text, "precious", 8),
          "the link's target was written");
    if (f)
        fclose(f);
    struct stat st;
    CHECK(lstat(fixture("linked.png"), &st) == 0 && S_ISREG(st.st_mode), "not a regular file");
    maa_image img;
    if (load("linked.png", &img)) {
        CHECK(img.width == 3 && img.height == 2 && !memcmp(img.data, g, 6), "pixels differ");
        maa_image_free(&img);
    }
    CHECK(maa_png_write(fixture("no/such/dir.png"), g, 3, 2, 1, err, sizeof err) == MAA_ERR &&
              strstr(err, "no/such/dir.png: cannot write: No such file or directory"),
          "%s", err);
}

static void test_png_crafted(void)
{
    uint8_t f[8192];
    maa_image img;
    /* 16-bit gray, 2x1: 0x0102, 0xfffe */
    const uint8_t g16[] = {0x01, 0x02, 0xff, 0xfe};
    write_bytes("g16.png", f, make_png(f, 2, 1, 16, 0, g16, 4, NULL, 0));
    if (load("g16.png", &img)) {
        CHECK(img.channels == 1 && img.depth == 16, "%d/%d", img.channels, img.depth);
        CHECK(px16(&img, 0) == 0x0102 && px16(&img, 1) == 0xfffe, "%u %u",
              px16(&img, 0), px16(&img, 1));
        maa_image_free(&img);
    }
    /* 16-bit RGB, 1x1 */
    const uint8_t rgb16[] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc};
    write_bytes("rgb16.png", f, make_png(f, 1, 1, 16, 2, rgb16, 6, NULL, 0));
    if (load("rgb16.png", &img)) {
        CHECK(img.channels == 3 && img.depth == 16, "%d/%d", img.channels, img.depth);
        CHECK(px16(&img, 0) == 0x1234 && px16(&img, 1) == 0x5678 &&
              px16(&img, 2) == 0x9abc, "%x %x %x", px16(&img, 0),
              px16(&img, 1), px16(&img, 2));
        maa_image_free(&img);
    }
    /* RGBA 8 and 16 keep 4 channels */
    const uint8_t rgba8[] = {1, 2, 3, 4, 5, 6, 7, 8};
    write_bytes("rgba8.png", f, make_png(f, 2, 1, 8, 6, rgba8, 8, NULL, 0));
    if (load("rgba8.png", &img)) {
        CHECK(img.channels == 4 && img.depth == 8 && memcmp(img.data, rgba8, 8) == 0,
              "%d/%d", img.channels, img.depth);
        maa_image_free(&img);
    }
    const uint8_t rgba16[] = {0, 1, 0, 2, 0, 3, 0xff, 0xff};
    write_bytes("rgba16.png", f, make_png(f, 1, 1, 16, 6, rgba16, 8, NULL, 0));
    if (load("rgba16.png", &img)) {
        CHECK(img.channels == 4 && img.depth == 16 && px16(&img, 0) == 1 &&
              px16(&img, 2) == 3 && px16(&img, 3) == 0xffff, "%d/%d",
              img.channels, img.depth);
        maa_image_free(&img);
    }
    /* gray+alpha: the alpha is dropped */
    const uint8_t ga8[] = {10, 255, 20, 0, 30, 128};
    write_bytes("ga8.png", f, make_png(f, 3, 1, 8, 4, ga8, 6, NULL, 0));
    if (load("ga8.png", &img)) {
        CHECK(img.channels == 1 && img.depth == 8 && px8(&img, 0) == 10 &&
              px8(&img, 1) == 20 && px8(&img, 2) == 30, "%d/%d", img.channels,
              img.depth);
        maa_image_free(&img);
    }
    const uint8_t ga16[] = {0x10, 0x20, 0, 0, 0xa0, 0xb0, 0xff, 0xff};
    write_bytes("ga16.png", f, make_png(f, 2, 1, 16, 4, ga16, 8, NULL, 0));
    if (load("ga16.png", &img)) {
        CHECK(img.channels == 1 && img.depth == 16 && px16(&img, 0) == 0x1020 &&
              px16(&img, 1) == 0xa0b0, "%d/%d %x", img.channels, img.depth,
              px16(&img, 0));
        maa_image_free(&img);
    }
    /* palette: expanded to RGB */
    const uint8_t plte[] = {255, 0, 0, 0, 255, 0, 10, 20, 30};
    const uint8_t idx[] = {2, 0, 1};
    write_bytes("pal.png", f, make_png(f, 3, 1, 8, 3, idx, 3, plte, 3));
    if (load("pal.png", &img)) {
        const uint8_t want[] = {10, 20, 30, 255, 0, 0, 0, 255, 0};
        CHECK(img.channels == 3 && img.depth == 8 && memcmp(img.data, want, 9) == 0,
              "%d/%d", img.channels, img.depth);
        maa_image_free(&img);
    }
    /* 1-bit gray: black and white become 0 and 255 */
    const uint8_t g1[] = {0xa0};  /* 1 0 1 0 */
    write_bytes("g1.png", f, make_png(f, 4, 1, 1, 0, g1, 1, NULL, 0));
    if (load("g1.png", &img)) {
        CHECK(img.channels == 1 && img.depth == 8 && px8(&img, 0) == 255 &&
              px8(&img, 1) == 0 && px8(&img, 2) == 255, "%d/%d %u", img.channels,
              img.depth, px8(&img, 0));
        maa_image_free(&img);
    }
    /* the extension does not matter */
    write_bytes("really-a-png.bmp", f, make_png(f, 2, 1, 16, 0, g16, 4, NULL, 0));
    if (load("really-a-png.bmp", &img))
        maa_image_free(&img);
}

static void test_png_broken(void)
{
    uint8_t f[8192];
    uint8_t rows[64 * 3];
    for (int i = 0; i < (int)sizeof rows; i++)
        rows[i] = (uint8_t)i;
    size_t n = make_png(f, 64, 1, 8, 2, rows, sizeof rows, NULL, 0);
    write_bytes("cut.png", f, n - 40);
    refused("cut.png", "truncated PNG (spng: ");
    write_bytes("head.png", f, 20);
    refused("head.png", "PNG (spng: ");
    f[n - 30] ^= 0x55;  /* inside IDAT: the CRC no longer matches */
    write_bytes("crc.png", f, n);
    refused("crc.png", "bad PNG (spng: ");
    write_bytes("garbage.png", "hello world, not an image", 25);
    refused("garbage.png", "not a PNG, PGM/PPM or BMP file");
    write_bytes("empty.png", "", 0);
    refused("empty.png", "not a PNG, PGM/PPM or BMP file");
    uint8_t big[8] = {0};
    n = make_png(f, 40000, 1, 8, 0, big, 0, NULL, 0);
    write_bytes("wide.png", f, n);
    refused("wide.png", "PNG");
    refused("missing.png", "cannot open");
    CHECK(mkdir(fixture("dir.png"), 0700) == 0, "cannot make dir.png");
    refused("dir.png", "is a directory");
    CHECK(mkfifo(fixture("fifo.png"), 0600) == 0, "cannot make fifo.png");
    refused("fifo.png", "not a regular file");
}

/* ---- PNM ----------------------------------------------------------------- */

static void test_pnm(void)
{
    maa_image img;
    const char p5[] = "P5\n# a comment\n3 2\n255\n\x00\x10\x20\x30\x40\xff";
    write_bytes("a.pgm", p5, sizeof p5 - 1);
    if (load("a.pgm", &img)) {
        const uint8_t want[] = {0, 0x10, 0x20, 0x30, 0x40, 0xff};
        CHECK(img.width == 3 && img.height == 2 && img.channels == 1 &&
              img.depth == 8 && memcmp(img.data, want, 6) == 0, "P5 %dx%d",
              img.width, img.height);
        maa_image_free(&img);
    }
    const char p2[] = "P2 2 2 # comment after\n 255 0 1\n# line\n254 255\n";
    write_bytes("a2.pgm", p2, sizeof p2 - 1);
    if (load("a2.pgm", &img)) {
        const uint8_t want[] = {0, 1, 254, 255};
        CHECK(img.channels == 1 && memcmp(img.data, want, 4) == 0, "P2");
        maa_image_free(&img);
    }
    const char p6[] = "P6 1 2 255\n\x01\x02\x03\x04\x05\x06";
    write_bytes("a.ppm", p6, sizeof p6 - 1);
    if (load("a.ppm", &img)) {
        CHECK(img.channels == 3 && img.depth == 8 &&
              memcmp(img.data, "\x01\x02\x03\x04\x05\x06", 6) == 0, "P6");
        maa_image_free(&img);
    }
    const char p3[] = "P3 1 1 255 7 8 9";
    write_bytes("a3.ppm", p3, sizeof p3 - 1);
    if (load("a3.ppm", &img)) {
        CHECK(img.channels == 3 && memcmp(img.data, "\x07\x08\x09", 3) == 0, "P3");
        maa_image_free(&img);
    }
    /* 16-bit: big-endian samples */
    const char p16[] = "P5 2 1 65535\n\x01\x02\xff\xfe";
    write_bytes("a16.pgm", p16, sizeof p16 - 1);
    if (load("a16.pgm", &img)) {
        CHECK(img.depth == 16 && px16(&img, 0) == 0x0102 && px16(&img, 1) == 0xfffe,
              "%d %x", img.depth, px16(&img, 0));
        maa_image_free(&img);
    }
    /* maxval 1023 is stretched to 16 bits, 15 to 8 bits */
    const char p10[] = "P5 3 1 1023\n\x00\x00\x02\x00\x03\xff";
    write_bytes("a10.pgm", p10, sizeof p10 - 1);
    if (load("a10.pgm", &img)) {
        CHECK(img.depth == 16 && px16(&img, 0) == 0 &&
              px16(&img, 1) == (512 * 65535 + 511) / 1023 && px16(&img, 2) == 65535,
              "%u %u", px16(&img, 1), px16(&img, 2));
        maa_image_free(&img);
    }
    const char p4b[] = "P2 2 1 15 15 5";
    write_bytes("a4.pgm", p4b, sizeof p4b - 1);
    if (load("a4.pgm", &img)) {
        CHECK(img.depth == 8 && px8(&img, 0) == 255 && px8(&img, 1) == 85,
              "%u %u", px8(&img, 0), px8(&img, 1));
        maa_image_free(&img);
    }
    const char cut[] = "P5 4 4 255\n\x01\x02";
    write_bytes("cut.pgm", cut, sizeof cut - 1);
    refused("cut.pgm", "truncated P5 data: 2 of 16 bytes");
    const char hdr[] = "P6 4";
    write_bytes("hdr.ppm", hdr, sizeof hdr - 1);
    refused("hdr.ppm", "malformed P6 header");
    const char over[] = "P2 2 1 100 5 101";
    write_bytes("over.pgm", over, sizeof over - 1);
    refused("over.pgm", "above maxval 100");
    /* Bytes enough for 6 samples (the spaces), but 4 of them. */
    const char a_cut[] = "P3 2 1 255 1 2 3 4      ";
    write_bytes("acut.ppm", a_cut, sizeof a_cut - 1);
    refused("acut.ppm", "data at sample 4 of 6");
    const char pbm[] = "P4 8 1\n\xff";
    write_bytes("a.pbm", pbm, sizeof pbm - 1);
    refused("a.pbm", "unsupported netpbm format P4");
    const char zero[] = "P5 0 1 255\n";
    write_bytes("zero.pgm", zero, sizeof zero - 1);
    refused("zero.pgm", "image size 0x1");
}

/* ---- BMP ----------------------------------------------------------------- */

static void le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

/* Headers of a BMP with a 40-byte info header; returns the offset of the
 * palette (= 54). */
static size_t bmp_header(uint8_t *f, int w, int h, int bpp, int comp,
                         int ncol, size_t data_bytes)
{
    memset(f, 0, 54);
    size_t off = 54 + 4 * (size_t)ncol;
    f[0] = 'B', f[1] = 'M';
    le32(f + 2, (uint32_t)(off + data_bytes));
    le32(f + 10, (uint32_t)off);
    le32(f + 14, 40);
    le32(f + 18, (uint32_t)w);
    le32(f + 22, (uint32_t)h);
    f[26] = 1;
    f[28] = (uint8_t)bpp;
    le32(f + 30, (uint32_t)comp);
    le32(f + 46, (uint32_t)ncol);
    return 54;
}

/* Headers that claim a huge image in a few bytes are refused before any
 * allocation, for every format. */
static void test_huge_claims(void)
{
    maa_image img;
    char err[MAA_ERRLEN] = "";
    const char pgm[] = "P5 20000 20000 255\n\x01";
    write_bytes("huge.pgm", pgm, sizeof pgm - 1);
    CHECK(maa_image_load(fixture("huge.pgm"), &img, err, sizeof err) == MAA_ERR &&
              strstr(err, "larger than") && strstr(err, "huge.pgm"), "%s", err);
    uint8_t bmp[54] = {'B', 'M'};
    bmp[10] = 54;
    bmp[14] = 40;
    const uint32_t w = 20000, h = 20000;
    memcpy(bmp + 18, &w, 4);
    memcpy(bmp + 22, &h, 4);
    bmp[26] = 1;
    bmp[28] = 24;
    write_bytes("huge.bmp", bmp, sizeof bmp);
    CHECK(maa_image_load(fixture("huge.bmp"), &img, err, sizeof err) == MAA_ERR &&
              strstr(err, "larger than"), "%s", err);

    /* Claims within the pixel limit, checked against the data before the
     * allocation: 20 bytes of P2 header had 256 MiB allocated for its
     * samples, a 69-byte PNG 384 MiB for its rows. */
    const char p2[] = "P2 16384 8192 65535\n";
    write_bytes("claim.pgm", p2, sizeof p2 - 1);
    refused("claim.pgm", "truncated P2 data: 1 bytes cannot hold 134217728 samples");
    uint8_t png[69] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, ih[13] = {0};
    be32(ih, 16384);
    be32(ih + 4, 8192);
    ih[8] = 8;
    ih[9] = 2;  /* RGB */
    size_t n = 8 + chunk(png + 8, "IHDR", ih, 13);
    static const uint8_t z[12] = {0x78, 0x01};  /* a zlib stream cut short */
    n += chunk(png + n, "IDAT", z, sizeof z);
    n += chunk(png + n, "IEND", NULL, 0);
    CHECK(n == sizeof png, "%zu bytes", n);
    write_bytes("claim.png", png, n);
    refused("claim.png", "truncated PNG: its header claims 16384x8192 pixels, 402661376 "
            "bytes of rows, which 69 bytes of file cannot hold");
    /* Beyond 512 MiB of samples whatever the file: 2^27 pixels of 16-bit
     * RGBA are 1 GiB (in a file large enough for its rows). */
    ih[8] = 16;
    ih[9] = 6;  /* RGBA */
    chunk(png + 8, "IHDR", ih, 13);
    uint8_t *big = calloc(1, 1100000);
    if (big) {
        memcpy(big, png, n);
        write_bytes("rgba16.png", big, 1100000);
        refused("rgba16.png", "a 16384x8192 image of 1073741824 bytes is larger than the 512 MiB");
    }
    free(big);
}

static void test_bmp(void)
{
    uint8_t f[1024];
    maa_image img;
    /* 24-bit, 3x2, bottom-up, rows padded from 9 to 12 bytes */
    size_t p = bmp_header(f, 3, 2, 24, 0, 0, 24);
    const uint8_t bottom[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0xee, 0xee, 0xee};
    const uint8_t top[12] = {11, 12, 13, 14, 15, 16, 17, 18, 19, 0, 0, 0};
    memcpy(f + p, bottom, 12);
    memcpy(f + p + 12, top, 12);
    write_bytes("a24.bmp", f, p + 24);
    if (load("a24.bmp", &img)) {
        const uint8_t want[] = {13, 12, 11, 16, 15, 14, 19, 18, 17,
                                3, 2, 1, 6, 5, 4, 9, 8, 7};
        CHECK(img.width == 3 && img.height == 2 && img.channels == 3 &&
              memcmp(img.data, want, 18) == 0, "24-bit bottom-up");
        maa_image_free(&img);
    }
    write_bytes("a24.bmp.cut", f, p + 20);
    refused("a24.bmp.cut", "truncated BMP pixel data");

    /* 32-bit, 2x2, top-down (negative height) */
    p = bmp_header(f, 2, -2, 32, 0, 0, 16);
    for (int i = 0; i < 16; i++)
        f[p + i] = (uint8_t)(i + 1);
    write_bytes("a32.bmp", f, p + 16);
    if (load("a32.bmp", &img)) {
        const uint8_t want[] = {3, 2, 1, 7, 6, 5, 11, 10, 9, 15, 14, 13};
        CHECK(img.height == 2 && img.channels == 3 && memcmp(img.data, want, 12) == 0,
              "32-bit top-down");
        maa_image_free(&img);
    }

    /* 8-bit gray palette -> 1 channel; 2x1 rows padded to 4 */
    p = bmp_header(f, 2, 1, 8, 0, 2, 4);
    const uint8_t gpal[] = {0, 0, 0, 0, 200, 200, 200, 0};
    memcpy(f + p, gpal, 8);
    const uint8_t gidx[] = {1, 0, 0, 0};
    memcpy(f + p + 8, gidx, 4);
    write_bytes("g8.bmp", f, p + 12);
    if (load("g8.bmp", &img)) {
        CHECK(img.channels == 1 && px8(&img, 0) == 200 && px8(&img, 1) == 0,
              "gray palette: %d channels", img.channels);
        maa_image_free(&img);
    }
    /* colour palette -> RGB */
    const uint8_t cpal[] = {255, 0, 0, 0, 1, 2, 3, 0};  /* BGRX */
    memcpy(f + p, cpal, 8);
    write_bytes("c8.bmp", f, p + 12);
    if (load("c8.bmp", &img)) {
        const uint8_t want[] = {3, 2, 1, 0, 0, 255};
        CHECK(img.channels == 3 && memcmp(img.data, want, 6) == 0, "colour palette");
        maa_image_free(&img);
    }
    f[p + 8] = 5;  /* beyond the 2 colours */
    write_bytes("badidx.bmp", f, p + 12);
    refused("badidx.bmp", "palette index 5 out of range");

    p = bmp_header(f, 2, 1, 8, 1, 2, 4);  /* RLE8 */
    write_bytes("rle.bmp", f, p + 12);
    refused("rle.bmp", "unsupported BMP compression 1");
    p = bmp_header(f, 2, 1, 4, 0, 2, 4);
    write_bytes("b4.bmp", f, p + 12);
    refused("b4.bmp", "unsupported BMP bit depth 4");
    write_bytes("hdr.bmp", f, 16);
    refused("hdr.bmp", "truncated BMP header");
    p = bmp_header(f, 40000, 1, 24, 0, 0, 0);
    write_bytes("wide.bmp", f, p);
    refused("wide.bmp", "image size 40000x1");
}

/* ---- preprocessing ------------------------------------------------------- */

static float out[3 * 16 * 16];

static void test_identity_and_scale(void)
{
    uint8_t g[16];
    for (int i = 0; i < 16; i++)
        g[i] = (uint8_t)(i * 17);
    maa_image img = {4, 4, 1, 8, g};
    CHECK(maa_preprocess(&img, 4, 1, out, err, sizeof err) == MAA_OK, "%s", err);
    for (int i = 0; i < 16; i++)
        CHECK_NEAR(out[i], g[i] / 127.5 - 1, 1e-7);
    CHECK(out[0] == -1 && out[15] == 1, "%g %g", out[0], out[15]);

    uint16_t g16[4] = {0, 32768, 65535, 1000};
    maa_image im16 = {2, 2, 1, 16, g16};
    CHECK(maa_preprocess(&im16, 2, 1, out, err, sizeof err) == MAA_OK, "%s", err);
    CHECK(out[0] == -1 && out[2] == 1, "%g %g", out[0], out[2]);
    CHECK_NEAR(out[1], 32768 / 32767.5 - 1, 1e-7);
    CHECK_NEAR(out[3], 1000 / 32767.5 - 1, 1e-7);
}

/* n pseudo-random bytes, the same for the same seed. */
static uint8_t *random_bytes(size_t n, uint32_t seed)
{
    uint8_t *px = malloc(n);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        px[i] = (uint8_t)(seed >> 24);
    }
    return px;
}

/* Shrinking on both axes at factors that are not integers (bins overlap by
 * a pixel), 8- and 16-bit, gray, RGB and RGBA, a gray frame feeding a
 * colour model, sizes just above S and far above it: maa_preprocess's
 * integer-sum path equals the literal bin means (tests/preprocess_literal.h)
 * bit for bit, as both sum exactly and divide the same way. */
static void test_area_shrink_vs_literal(void)
{
    static const struct {
        int w, h, ch, depth, s, c;
    } cases[] = {
        {257, 256, 1, 8, 256, 1}, {300, 1000, 3, 8, 256, 3}, {1023, 517, 4, 8, 256, 3},
        {640, 480, 1, 16, 256, 3}, {2448, 2048, 1, 8, 256, 1}, {99, 70, 3, 16, 64, 3},
        {64, 64, 3, 8, 64, 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int w = cases[k].w, h = cases[k].h, ch = cases[k].ch, s = cases[k].s,
                  c = cases[k].c, bytes = cases[k].depth / 8;
        uint8_t *px = random_bytes((size_t)w * h * ch * bytes, 12345u + (uint32_t)k);
        float *got = malloc(sizeof(float) * c * s * s), *want = malloc(sizeof(float) * c * s * s);
        maa_image img = {w, h, ch, cases[k].depth, px};
        CHECK(maa_preprocess(&img, s, c, got, err, sizeof err) == MAA_OK, "%s", err);
        preprocess_literal(&img, s, c, want);
        size_t differ = 0;
        double worst = 0;
        for (size_t i = 0; i < (size_t)c * s * s; i++) {
            differ += got[i] != want[i];
            worst = fmax(worst, fabs((double)got[i] - want[i]));
        }
        CHECK(differ == 0, "%dx%dx%d %d-bit -> %d: %zu values differ, by up to %g", w, h, ch,
              cases[k].depth, s, differ, worst);
        free(px);
        free(got);
        free(want);
    }
}

/* engine/pixel.h's maa_area_pixel8, the per-element arithmetic of the cuda
 * frame kernel (compiled here by the C compiler), equals maa_preprocess bit
 * for bit on 8-bit frames: the device's tensors are the host's, which is
 * what lets test_cuda ask for identical masks. */
static void test_area_pixel8_is_preprocess(void)
{
    static const struct {
        int w, h, ch, s, c;
    } cases[] = {
        {64, 64, 4, 64, 3}, {257, 256, 1, 256, 1}, {1023, 517, 4, 256, 3},
        {203, 150, 1, 64, 3}, {130, 97, 3, 64, 3}, {2448, 2048, 1, 256, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int w = cases[k].w, h = cases[k].h, ch = cases[k].ch, s = cases[k].s,
                  c = cases[k].c;
        uint8_t *px = random_bytes((size_t)w * h * ch, 999u + (uint32_t)k);
        float *want = malloc(sizeof(float) * c * s * s);
        maa_image img = {w, h, ch, 8, px};
        CHECK(maa_preprocess(&img, s, c, want, err, sizeof err) == MAA_OK, "%s", err);
        size_t differ = 0;
        for (int ch_out = 0; ch_out < c; ch_out++)
            for (int oy = 0; oy < s; oy++)
                for (int ox = 0; ox < s; ox++) {
                    float got = maa_area_pixel8(px, w, h, ch, ch == 1 ? 0 : ch_out, s, ox, oy);
                    differ += got != want[((size_t)ch_out * s + oy) * s + ox];
                }
        CHECK(differ == 0, "%dx%dx%d -> %d: %zu of %d values differ", w, h, ch, s, differ,
              c * s * s);
        free(px);
        free(want);
    }
}

/* 12 x 8 -> 4 x 4: factor 3 across, 2 down; each output is its block mean. */
static void test_area_integer_factor(void)
{
    uint8_t rgb[8 * 12 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++)
        rgb[i] = (uint8_t)((i * 97 + i / 7) % 256);
    maa_image img = {12, 8, 3, 8, rgb};
    CHECK(maa_preprocess(&img, 4, 3, out, err, sizeof err) == MAA_OK, "%s", err);
    double worst = 0;
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++) {
                double s = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 3; dx++)
                        s += rgb[((2 * y + dy) * 12 + 3 * x + dx) * 3 + c];
                double want = s / 6 / 127.5 - 1;
                worst = fmax(worst, fabs(out[c * 16 + y * 4 + x] - want));
            }
    CHECK(worst < 1e-6, "max error %g", worst);
}

/* References from torch 1.13:
 * /usr/bin/python3 -c "import torch, torch.nn.functional as F;
 *   a=torch.tensor([[(i*37+j*11)%256 for j in range(5)] for i in range(5)],
 *                  dtype=torch.float64)[None,None];
 *   print(F.interpolate(a,size=(3,3),mode='area')[0,0].tolist());
 *   b=torch.tensor([[(i*53+j*29)%256 for j in range(3)] for i in range(3)],
 *                  dtype=torch.float64)[None,None];
 *   print(F.interpolate(b,size=(5,5),mode='bilinear',align_corners=False)[0,0].tolist())" */
static void test_matches_torch(void)
{
    uint8_t a[25], b[9];
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            a[i * 5 + j] = (uint8_t)((i * 37 + j * 11) % 256);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            b[i * 3 + j] = (uint8_t)((i * 53 + j * 29) % 256);
    static const double area[9] = {24.0, 40.5, 57.0, 79.5, 96.0, 112.5,
                                   135.0, 151.5, 168.0};
    static const double bil[25] = {
        0.0, 11.6, 29.0, 46.4, 58.0, 21.2, 32.8, 50.2, 67.6, 79.2,
        53.0, 64.6, 82.0, 99.4, 111.0, 84.8, 96.4, 113.8, 131.2, 142.8,
        106.0, 117.6, 135.0, 152.4, 164.0};
    maa_image ia = {5, 5, 1, 8, a}, ib = {3, 3, 1, 8, b};
    CHECK(maa_preprocess(&ia, 3, 1, out, err, sizeof err) == MAA_OK, "%s", err);
    for (int i = 0; i < 9; i++)
        CHECK_NEAR((out[i] + 1) * 127.5, area[i], 1e-4);
    CHECK(maa_preprocess(&ib, 5, 1, out, err, sizeof err) == MAA_OK, "%s", err);
    for (int i = 0; i < 25; i++)
        CHECK_NEAR((out[i] + 1) * 127.5, bil[i], 1e-4);
}

/* 2x2 -> 4x4 bilinear, by hand: per axis the source positions are
 * -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the last pixel: it), so the
 * weights of (p0, p1) are (1,0), (.75,.25), (.25,.75), (0,1). */
static void test_bilinear_2x2(void)
{
    uint8_t g[4] = {0, 100, 200, 255};
    maa_image img = {2, 2, 1, 8, g};
    CHECK(maa_preprocess(&img, 4, 1, out, err, sizeof err) == MAA_OK, "%s", err);
    const double w[4][2] = {{1, 0}, {.75, .25}, {.25, .75}, {0, 1}};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            double top = w[x][0] * 0 + w[x][1] * 100;
            double bot = w[x][0] * 200 + w[x][1] * 255;
            double want = w[y][0] * top + w[y][1] * bot;
            CHECK_NEAR((out[y * 4 + x] + 1) * 127.5, want, 1e-4);
        }
    CHECK_NEAR((out[5] + 1) * 127.5, 72.1875, 1e-4);  /* (1,1) worked out */
}

static void test_channels(void)
{
    uint8_t g[4] = {0, 64, 128, 255};
    maa_image gray = {2, 2, 1, 8, g};
    CHECK(maa_preprocess(&gray, 2, 3, out, err, sizeof err) == MAA_OK, "%s", err);
    for (int i = 0; i < 4; i++)
        CHECK(out[i] == out[4 + i] && out[i] == out[8 + i] &&
              fabs(out[i] - (g[i] / 127.5 - 1)) < 1e-7, "pixel %d not replicated", i);

    uint8_t rgb[12] = {0};
    maa_image colour = {2, 2, 3, 8, rgb};
    err[0] = 0;
    CHECK(maa_preprocess(&colour, 2, 1, out, err, sizeof err) == MAA_ERR, "accepted");
    CHECK(strstr(err, "1-channel"), "%s", err);

    /* RGBA: the alpha is ignored */
    uint8_t rgba[8] = {10, 20, 30, 0, 40, 50, 60, 255};
    maa_image ra = {2, 1, 4, 8, rgba};
    float o2[3 * 2 * 2];
    CHECK(maa_preprocess(&ra, 2, 3, o2, err, sizeof err) == MAA_OK, "%s", err);
    /* 2x1 -> 2x2: each column repeated down */
    CHECK_NEAR((o2[0] + 1) * 127.5, 10, 1e-4);
    CHECK_NEAR((o2[4 + 1] + 1) * 127.5, 50, 1e-4);
    CHECK_NEAR((o2[8 + 3] + 1) * 127.5, 60, 1e-4);
    CHECK(maa_preprocess(&ra, 2, 2, o2, err, sizeof err) == MAA_ERR, "c=2 accepted");
}

/* An image's sides may come from a camera's stream: a -1 x -1 frame made
 * the resize buffers 2^64 bytes (the sanitizer build aborted).  Sides are
 * checked before anything is sized. */
static void test_bad_sides(void)
{
    static const int sides[][2] = {{-1, -1}, {0, 2}, {2, -2}, {65536, 1}};
    uint8_t px[4] = {0};
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        maa_image img = {sides[i][0], sides[i][1], 1, 8, px};
        err[0] = 0;
        CHECK(maa_preprocess(&img, 4, 1, out, err, sizeof err) == MAA_ERR &&
                  strstr(err, "each side must be 1..65535"),
              "%dx%d: %s", img.width, img.height, err);
    }
    maa_image none = {2, 2, 1, 8, NULL};
    CHECK(maa_preprocess(&none, 4, 1, out, err, sizeof err) == MAA_ERR &&
              strstr(err, "without data"), "%s", err);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_png_8bit_via_writer);
    RUN(test_png_write_over_link);
    RUN(test_png_crafted);
    RUN(test_png_broken);
    RUN(test_pnm);
    RUN(test_bmp);
    RUN(test_huge_claims);
    RUN(test_identity_and_scale);
    RUN(test_area_integer_factor);
    RUN(test_area_shrink_vs_literal);
    RUN(test_area_pixel8_is_preprocess);
    RUN(test_matches_torch);
    RUN(test_bilinear_2x2);
    RUN(test_channels);
    RUN(test_bad_sides);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return CHECK_SUMMARY();
}

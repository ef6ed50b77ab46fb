/* fakecam.c — `maa fakecam`: a fake GigE Vision camera serving a
 * directory of images, for demos and for trying maad without a camera. */
#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "camera/camera.h"
#include "maa/maa.h"

static const char who[] = "maa fakecam";

static const char fakecam_usage[] =
    "usage: maa fakecam --images DIR [--fps F] [--serial S] [--address A]\n"
    "                   [--width W --height H] [--pixel-format FMT] [--duration SEC]\n"
    "Serves the images of DIR (.png .pgm .ppm .bmp, in name order, in turn) as a\n"
    "GigE Vision camera until SIGINT/SIGTERM or the duration.  Prints the device id\n"
    "to open on stdout, then a line of statistics a second on stderr.\n\n"
    "  --images DIR       the images (resized to the camera's size)\n"
    "  --fps F            frames per second, 0.01 to 1000 (default 10)\n"
    "  --serial S         serial number; the device id is Aravis-Fake-S (default MAA0)\n"
    "  --address A        IPv4 address or interface to serve on (default 127.0.0.1)\n"
    "  --width W, --height H   camera size, 1 to 2048 (default: the first image's)\n"
    "  --pixel-format FMT Mono8, RGB8 or BayerRG8/GR8/GB8/BG8 (default Mono8)\n"
    "  --duration SEC     stop after SEC seconds, at most a year (default 0: run until\n"
    "                     signalled)\n";

static volatile sig_atomic_t fakecam_quit;

static void on_signal(int sig)
{
    (void)sig;
    fakecam_quit = 1;
}

static int has_image_ext(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".pgm") ||
                   !strcasecmp(dot, ".ppm") || !strcasecmp(dot, ".pnm") ||
                   !strcasecmp(dot, ".bmp"));
}

/* Loads DIR's images in name order; returns their count, -1 on error. */
static int load_images(const char *dir, maa_image **out)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort), count = 0, bad = 0;
    if (n < 0) {
        perror(dir);
        return -1;
    }
    maa_image *imgs = calloc((size_t)n + 1, sizeof *imgs);
    for (int i = 0; i < n; i++) {
        if (imgs && !bad && has_image_ext(names[i]->d_name)) {
            char path[4096], err[MAA_ERRLEN];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            if (maa_image_load(path, &imgs[count], err, sizeof err) == MAA_OK)
                count++;
            else {
                fprintf(stderr, "maa fakecam: %s\n", err);
                bad = 1;
            }
        }
        free(names[i]);
    }
    free(names);
    if (!imgs || bad || count == 0) {
        if (imgs && !bad && count == 0)
            fprintf(stderr, "maa fakecam: %s holds no .png/.pgm/.ppm/.bmp image\n", dir);
        for (int i = 0; imgs && i < count; i++)
            maa_image_free(&imgs[i]);
        free(imgs);
        return -1;
    }
    *out = imgs;
    return count;
}

int maa_cmd_fakecam(int argc, char **argv)
{
    static const struct option opts[] = {
        {"images", 1, 0, 'i'}, {"fps", 1, 0, 'f'}, {"serial", 1, 0, 's'},
        {"address", 1, 0, 'a'}, {"width", 1, 0, 'W'}, {"height", 1, 0, 'H'},
        {"pixel-format", 1, 0, 'p'}, {"duration", 1, 0, 'd'}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    cam_fake_config fc = {.fps = 10, .fmt = CAM_PIX_MONO8};
    const char *dir = NULL;
    double duration = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        long long side;
        switch (c) {
        case 'i': dir = optarg; break;
        case 's': fc.serial = optarg; break;
        case 'a': fc.address = optarg; break;
        case 'f':
            if (maa_cli_parse_number(who, "fps", optarg, CAM_FAKE_MIN_FPS, CAM_FAKE_MAX_FPS,
                                     &fc.fps))
                return 2;
            break;
        case 'd':
            if (maa_cli_parse_number(who, "duration", optarg, 0, MAA_CLI_MAX_SECONDS, &duration))
                return 2;
            break;
        case 'W':
            if (maa_cli_parse_integer(who, "width", optarg, 1, CAM_FAKE_MAX_SIDE, &side))
                return 2;
            fc.width = (int)side;
            break;
        case 'H':
            if (maa_cli_parse_integer(who, "height", optarg, 1, CAM_FAKE_MAX_SIDE, &side))
                return 2;
            fc.height = (int)side;
            break;
        case 'p':
            if (cam_pixfmt_parse(optarg, &fc.fmt) != MAA_OK) {
                fprintf(stderr, "maa fakecam: unknown pixel format \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'h': fputs(fakecam_usage, stdout); return 0;
        default: fputs(fakecam_usage, stderr); return 2;
        }
    }
    if (!dir || optind < argc || (fc.width > 0) != (fc.height > 0)) {
        fputs(fakecam_usage, stderr);
        return 2;
    }
    maa_image *imgs;
    int n = load_images(dir, &imgs);
    if (n < 0)
        return 1;
    cam_fake *fake;
    char err[MAA_ERRLEN];
    int rc = cam_fake_start(&fc, imgs, n, &fake, err, sizeof err);
    for (int i = 0; i < n; i++)
        maa_image_free(&imgs[i]);
    free(imgs);
    if (rc != MAA_OK) {
        fprintf(stderr, "maa fakecam: %s\n", err);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("%s\n", cam_fake_device_id(fake));
    fflush(stdout);
    fprintf(stderr, "maa fakecam: serving %d image%s from %s at %g frames/s as %s\n", n,
            n == 1 ? "" : "s", dir, fc.fps, cam_fake_device_id(fake));

    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t last_frames = 0;
    double last_report = 0;
    while (!fakecam_quit) {
        struct timespec tick = {0, 100000000L};
        nanosleep(&tick, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double t = (double)(now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) * 1e-9;
        if (t - last_report >= 1.0) {
            uint64_t frames = cam_fake_frames(fake);
            fprintf(stderr, "maa fakecam: %.0f s: %llu frames sent (%.1f/s)\n", t,
                    (unsigned long long)frames, (double)(frames - last_frames) / (t - last_report));
            last_frames = frames;
            last_report = t;
        }
        if (duration > 0 && t >= duration)
            break;
    }
    fprintf(stderr, "maa fakecam: stopped after %llu frames\n",
            (unsigned long long)cam_fake_frames(fake));
    cam_fake_stop(fake);
    return 0;
}

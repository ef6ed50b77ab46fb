/* keygen.c — `maa keygen NAME`: a CURVE key pair for the verdict socket,
 * as the certificate files maad, maa watch, maa-plc, pyzmq and CZMQ read
 * (docs/operations.md, "Securing the verdict socket"). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "daemon/daemon.h"
#include "maa/maa.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: maa keygen NAME [--dir DIR]\n"
               "  Makes a CURVE key pair: DIR/NAME.key_secret (both keys, mode 0600: stays on\n"
               "  this host) and DIR/NAME.key (the public key: give it to the other side).\n"
               "  maad: NAME.key_secret as publish.curve_secret_key, its NAME.key to each\n"
               "  subscriber; a subscriber: its NAME.key into maad's publish.curve_clients\n"
               "  directory.  Existing files are never replaced.\n"
               "  --dir DIR   where to write them (default: the current directory)\n");
}

/* Names become file names beside others: no path, no hidden file. */
static int good_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-')
        return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

int maa_cmd_keygen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = ".";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[optind];
    if (!good_name(name)) {
        fprintf(stderr, "maa keygen: name \"%s\": 1 to 64 of A-Z a-z 0-9 _ . -, not starting "
                "with . or -\n", name);
        return 2;
    }
    maad_curve_cert cert;
    char err[MAA_ERRLEN];
    if (maad_curve_cert_write(dir, name, &cert, err, sizeof err) != MAA_OK) {
        fprintf(stderr, "maa keygen: %s\n", err);
        return 1;
    }
    printf("%s/%s.key_secret: secret key (mode 0600): keep it on this host\n"
           "%s/%s.key: public key %s: give it to the other side\n",
           dir, name, dir, name, cert.public_key);
    return 0;
}

/* curve.c — CURVE certificates and the verdict socket's access control
 * (see daemon.h, docs/operations.md "Securing the verdict socket").
 *
 * Certificates are the text files of CZMQ's zcert and pyzmq's zmq.auth
 * (NAME.key: the public key; NAME.key_secret: both keys), so that a PLC
 * bridge written in Python or with CZMQ uses the same files as maad and
 * maa, and the allowed clients are a directory of public certificates as
 * those libraries' authenticators take it.
 *
 * The ZAP handler (ZeroMQ's authentication protocol, RFC 27) is a thread
 * with a REP socket on inproc://zeromq.zap.01 in the publisher's context:
 * libzmq asks it about every CURVE handshake and drops the connection it
 * refuses before a single verdict reaches it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "daemon/daemon.h"

/* A certificate is a few hundred bytes; anything much larger is not one. */
#define CERT_MAX_BYTES 65536
/* More allowed clients than a cell ever has; bounds memory and the scan. */
#define MAX_CLIENTS 1024
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* Refusals logged at most once per this many ns: a peer retrying a wrong
 * key every 100 ms must not flood the journal. */
#define REFUSAL_LOG_NS 10000000000ull

/* The value of `name = "..."` on a line (quotes optional), or NULL. */
static const char *cert_value(const char *line, const char *name, size_t *len)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0)
        return NULL;
    const char *p = line + n;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '=')
        return NULL;
    p++;
    while (*p == ' ' || *p == '\t' || *p == '"' || *p == '\'')
        p++;
    const char *e = p;
    while (*e && *e != '"' && *e != '\'' && *e != ' ' && *e != '\t' && *e != '\r')
        e++;
    *len = (size_t)(e - p);
    return p;
}

/* A Z85 key of 40 characters that decodes, into out (41 bytes). */
static int take_key(const char *v, size_t len, char *out)
{
    uint8_t bin[32];
    if (len != MAAD_CURVE_KEY_LEN)
        return MAA_ERR;
    memcpy(out, v, len);
    out[len] = '\0';
    return zmq_z85_decode(bin, out) ? MAA_OK : MAA_ERR;
}

int maad_curve_cert_parse(const char *text, size_t n, const char *path, maad_curve_cert *c,
                          char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int lineno = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && text[j] != '\n')
            j++;
        lineno++;
        char line[256];
        size_t len = j - i;
        const char *s = text + i;
        i = j + 1;
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        if (!len || *s == '#')
            continue;
        if (len >= sizeof line) /* no key line is this long */
            continue;
        memcpy(line, s, len);
        line[len] = '\0';
        if (memchr(line, '\0', len)) {
            snprintf(err, errlen, "%.200s:%d: not a text file, not a CURVE certificate", path,
                     lineno);
            return MAA_ERR;
        }
        size_t vlen;
        const char *v;
        if ((v = cert_value(line, "public-key", &vlen))) {
            if (take_key(v, vlen, c->public_key) != MAA_OK)
                goto bad_key;
        } else if ((v = cert_value(line, "secret-key", &vlen))) {
            if (take_key(v, vlen, c->secret_key) != MAA_OK)
                goto bad_key;
            c->has_secret = 1;
        }
        continue;
    bad_key:
        snprintf(err, errlen, "%.200s:%d: a key is 40 characters of Z85 (as maa keygen writes "
                 "it)", path, lineno);
        return MAA_ERR;
    }
    if (!c->public_key[0]) {
        snprintf(err, errlen, "%.200s: no public-key line: not a CURVE certificate (maa keygen "
                 "writes them)", path);
        return MAA_ERR;
    }
    if (c->has_secret) {
        char derived[MAAD_CURVE_KEY_LEN + 1];
        if (zmq_curve_public(derived, c->secret_key) != 0 ||
            strcmp(derived, c->public_key) != 0) {
            snprintf(err, errlen, "%.200s: the secret-key does not belong to the public-key",
                     path);
            return MAA_ERR;
        }
    }
    return MAA_OK;
}

int maad_curve_cert_load(const char *path, int want_secret, maad_curve_cert *c, char *err,
                         size_t errlen)
{
    uint8_t *buf;
    size_t n;
    if (maa_read_file(path, CERT_MAX_BYTES, "a CURVE certificate", &buf, &n, err, errlen) !=
        MAA_OK)
        return MAA_ERR;
    int rc = maad_curve_cert_parse((const char *)buf, n, path, c, err, errlen);
    free(buf);
    if (rc != MAA_OK)
        return MAA_ERR;
    if (want_secret && !c->has_secret) {
        snprintf(err, errlen, "%.200s: no secret-key line: this is the public half (NAME.key); "
                 "give the NAME.key_secret file", path);
        return MAA_ERR;
    }
    if (want_secret) {
        /* Like ssh with a private key: a secret others can read is not
         * one.  Group read stays allowed (root:maad 0640). */
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 0007)) {
            snprintf(err, errlen, "%.200s: the secret key is readable by others (mode %04o); "
                     "chmod o-rwx it", path, (unsigned)(st.st_mode & 07777));
            return MAA_ERR;
        }
    }
    return MAA_OK;
}

/* Writes text as a new file (never over an existing one, never through a
 * link) with the given mode. */
static int write_new(const char *path, const char *text, mode_t mode, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%.200s: %s", path,
                 errno == EEXIST ? "exists already (maa keygen never replaces a key)"
                                 : strerror(errno));
        return MAA_ERR;
    }
    int e = maa_write_all(fd, text, strlen(text));
    if (!e && fsync(fd) != 0)
        e = errno;
    if (close(fd) != 0 && !e)
        e = errno;
    if (e) {
        snprintf(err, errlen, "%.200s: %s", path, strerror(e));
        unlink(path);
        return MAA_ERR;
    }
    return MAA_OK;
}

int maad_curve_cert_write(const char *dir, const char *name, maad_curve_cert *c, char *err,
                          size_t errlen)
{
    memset(c, 0, sizeof *c);
    if (zmq_curve_keypair(c->public_key, c->secret_key) != 0) {
        snprintf(err, errlen, "cannot make a key pair: %s", zmq_strerror(zmq_errno()));
        return MAA_ERR;
    }
    c->has_secret = 1;
    char when[32], pub_path[4200], sec_path[4200], text[1024];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime_r(&now, &tm));
    snprintf(pub_path, sizeof pub_path, "%s/%s.key", dir, name);
    snprintf(sec_path, sizeof sec_path, "%s/%s.key_secret", dir, name);
    const char *head = "#   ****  Generated on %s UTC by maa keygen  ****\n"
                       "#   ZeroMQ CURVE %s Certificate\n"
                       "#   %s\n\n"
                       "metadata\n"
                       "curve\n"
                       "    public-key = \"%s\"\n";
    /* The secret first: a public key without its secret is of no use, and a
     * failure then leaves nothing behind. */
    snprintf(text, sizeof text, head, when, "**Secret**",
             "DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.",
             c->public_key);
    snprintf(text + strlen(text), sizeof text - strlen(text), "    secret-key = \"%s\"\n",
             c->secret_key);
    if (write_new(sec_path, text, 0600, err, errlen) != MAA_OK)
        return MAA_ERR;
    snprintf(text, sizeof text, head, when, "Public",
             "Give this file to the other side: it names this key and holds no secret.",
             c->public_key);
    if (write_new(pub_path, text, 0644, err, errlen) != MAA_OK) {
        unlink(sec_path);
        return MAA_ERR;
    }
    return MAA_OK;
}

int maad_curve_client(void *sock, const char *server_key, const char *client_cert, char *err,
                      size_t errlen)
{
    maad_curve_cert server, client;
    if (maad_curve_cert_load(server_key, 0, &server, err, errlen) != MAA_OK ||
        maad_curve_cert_load(client_cert, 1, &client, err, errlen) != MAA_OK)
        return MAA_ERR;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server.public_key, MAAD_CURVE_KEY_LEN + 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, client.public_key, MAAD_CURVE_KEY_LEN + 1) ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, client.secret_key, MAAD_CURVE_KEY_LEN + 1)) {
        snprintf(err, errlen, "CURVE: %s", zmq_strerror(zmq_errno()));
        return MAA_ERR;
    }
    return MAA_OK;
}

/* ---- the allowed clients and the ZAP handler -------------------------------- */

typedef struct {
    uint8_t key[32];
    char name[64];              /* the certificate's file name without .key */
} client_key;

typedef struct {
    client_key *keys;
    int n;
} key_set;

struct maad_zap {
    void *sock;
    pthread_t thread;
    atomic_int stop;
    const maad_logger *log;     /* NULL: nothing logged */
    char dir[4096];
    pthread_mutex_t lock;       /* guards set: reload swaps it */
    key_set set;
    _Atomic uint64_t accepted, refused;
    uint64_t last_refusal_log_ns, refusals_unlogged;
};

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every DIR/NAME.key (public certificates; NAME.key_secret files are
 * skipped, as pyzmq and CZMQ skip them), in name order so that messages
 * and duplicates come out the same way every time. */
static int load_set(const char *dir, key_set *out, char *err, size_t errlen)
{
    out->keys = NULL;
    out->n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "publish.curve_clients %.200s: %s", dir, strerror(errno));
        return MAA_ERR;
    }
    char *names[MAX_CLIENTS];
    int n = 0, rc = MAA_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".key"))
            continue;
        if (n == MAX_CLIENTS) {
            snprintf(err, errlen, "publish.curve_clients %.200s: more than %d certificates",
                     dir, MAX_CLIENTS);
            rc = MAA_ERR;
            break;
        }
        if (!(names[n] = strdup(e->d_name))) {
            snprintf(err, errlen, "publish.curve_clients: out of memory");
            rc = MAA_ERR;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == MAA_OK && n == 0) {
        snprintf(err, errlen, "publish.curve_clients %.200s: no client certificates (NAME.key, "
                 "from maa keygen): no subscriber could connect", dir);
        rc = MAA_ERR;
    }
    if (rc == MAA_OK && !(out->keys = calloc((size_t)n, sizeof *out->keys))) {
        snprintf(err, errlen, "publish.curve_clients: out of memory");
        rc = MAA_ERR;
    }
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    for (int i = 0; i < n && rc == MAA_OK; i++) {
        char path[4400], why[MAA_ERRLEN];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        maad_curve_cert c;
        if (maad_curve_cert_load(path, 0, &c, why, sizeof why) != MAA_OK) {
            snprintf(err, errlen, "publish.curve_clients: %s", why);
            rc = MAA_ERR;
            break;
        }
        client_key *k = &out->keys[out->n++];
        zmq_z85_decode(k->key, c.public_key);
        snprintf(k->name, sizeof k->name, "%.*s", (int)(strlen(names[i]) - 4), names[i]);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    if (rc != MAA_OK) {
        free(out->keys);
        out->keys = NULL;
        out->n = 0;
    }
    return rc;
}

static const client_key *find_key(const key_set *s, const uint8_t *key)
{
    for (int i = 0; i < s->n; i++)
        if (memcmp(s->keys[i].key, key, 32) == 0)
            return &s->keys[i];
    return NULL;
}

/* One ZAP request's frames: version, request id, domain, address,
 * routing id, mechanism, credentials (RFC 27). */
#define ZAP_FRAMES 7

static void zap_reply(void *sock, zmq_msg_t *id, const char *code, const char *text,
                      const char *user)
{
    zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(sock, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
    zmq_send(sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(sock, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(sock, "", 0, 0);
}

static void zap_answer(maad_zap *z)
{
    zmq_msg_t f[ZAP_FRAMES];
    int n = 0, more = 1;
    for (int i = 0; i < ZAP_FRAMES; i++)
        zmq_msg_init(&f[i]);
    while (more) {
        zmq_msg_t extra, *m = n < ZAP_FRAMES ? &f[n] : &extra;
        if (m == &extra)
            zmq_msg_init(&extra);
        if (zmq_msg_recv(m, z->sock, 0) < 0) {
            if (m == &extra)
                zmq_msg_close(&extra);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(&extra);
        n++;
    }
    char address[64] = "?";
    if (n >= 4)
        snprintf(address, sizeof address, "%.*s", (int)zmq_msg_size(&f[3]),
                 (const char *)zmq_msg_data(&f[3]));
    int curve = n >= 6 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0;
    const client_key *k = NULL;
    char name[64] = "";
    if (n == ZAP_FRAMES && curve && zmq_msg_size(&f[6]) == 32) {
        pthread_mutex_lock(&z->lock);
        k = find_key(&z->set, zmq_msg_data(&f[6]));
        if (k)
            snprintf(name, sizeof name, "%s", k->name);
        pthread_mutex_unlock(&z->lock);
    }
    if (n < 2) {
        /* Not a request we can answer (REP needs the id); libzmq never
         * sends one. */
    } else if (k) {
        atomic_fetch_add(&z->accepted, 1);
        zap_reply(z->sock, &f[1], "200", "OK", name);
        if (z->log)
            maad_log(z->log, MAAD_LOG_INFO, "publish: subscriber %s connected with key %s", address,
                 name);
    } else {
        atomic_fetch_add(&z->refused, 1);
        zap_reply(z->sock, &f[1], "400", "key not allowed", "");
        uint64_t now = maad_mono_ns();
        if (z->log &&
            (!z->last_refusal_log_ns || now - z->last_refusal_log_ns >= REFUSAL_LOG_NS)) {
            char key[MAAD_CURVE_KEY_LEN + 1] = "?";
            if (n == ZAP_FRAMES && curve && zmq_msg_size(&f[6]) == 32)
                zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
            maad_log(z->log, MAAD_LOG_WARNING,
                     "publish: refused subscriber %s: %s %s is not in publish.curve_clients "
                     "(%llu more refused since the last such line)",
                     address, curve ? "public key" : "mechanism", curve ? key : "not CURVE",
                     (unsigned long long)z->refusals_unlogged);
            z->last_refusal_log_ns = now;
            z->refusals_unlogged = 0;
        } else {
            z->refusals_unlogged++;
        }
    }
    for (int i = 0; i < ZAP_FRAMES; i++)
        zmq_msg_close(&f[i]);
}

static void *zap_run(void *arg)
{
    maad_zap *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it = {.socket = z->sock, .events = ZMQ_POLLIN};
        int rc = zmq_poll(&it, 1, 100);
        if (rc > 0 && (it.revents & ZMQ_POLLIN))
            zap_answer(z);
        else if (rc < 0 && zmq_errno() == ETERM)
            break;
    }
    return NULL;
}

int maad_zap_start(void *ctx, const char *clients_dir, const maad_logger *log, maad_zap **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    maad_zap *z = calloc(1, sizeof *z);
    if (!z) {
        snprintf(err, errlen, "publish: out of memory");
        return MAA_ERR;
    }
    z->log = log;
    snprintf(z->dir, sizeof z->dir, "%s", clients_dir);
    pthread_mutex_init(&z->lock, NULL);
    if (load_set(clients_dir, &z->set, err, errlen) != MAA_OK) {
        pthread_mutex_destroy(&z->lock);
        free(z);
        return MAA_ERR;
    }
    int linger = 0;
    z->sock = zmq_socket(ctx, ZMQ_REP);
    if (!z->sock || zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger) ||
        zmq_bind(z->sock, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "publish: ZAP handler: %s", zmq_strerror(zmq_errno()));
        if (z->sock)
            zmq_close(z->sock);
        free(z->set.keys);
        pthread_mutex_destroy(&z->lock);
        free(z);
        return MAA_ERR;
    }
    if (pthread_create(&z->thread, NULL, zap_run, z) != 0) {
        snprintf(err, errlen, "publish: ZAP handler: cannot start its thread");
        zmq_close(z->sock);
        free(z->set.keys);
        pthread_mutex_destroy(&z->lock);
        free(z);
        return MAA_ERR;
    }
    *out = z;
    return MAA_OK;
}

int maad_zap_reload(maad_zap *z, int *nkeys, char *err, size_t errlen)
{
    key_set s;
    if (load_set(z->dir, &s, err, errlen) != MAA_OK)
        return MAA_ERR;
    pthread_mutex_lock(&z->lock);
    key_set old = z->set;
    z->set = s;
    pthread_mutex_unlock(&z->lock);
    free(old.keys);
    if (nkeys)
        *nkeys = s.n;
    return MAA_OK;
}

void maad_zap_counts(maad_zap *z, int *keys, uint64_t *accepted, uint64_t *refused)
{
    pthread_mutex_lock(&z->lock);
    *keys = z->set.n;
    pthread_mutex_unlock(&z->lock);
    *accepted = atomic_load(&z->accepted);
    *refused = atomic_load(&z->refused);
}

void maad_zap_stop(maad_zap *z)
{
    if (!z)
        return;
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
    zmq_close(z->sock);
    free(z->set.keys);
    pthread_mutex_destroy(&z->lock);
    free(z);
}

/* ---- a subscriber's handshakes ------------------------------------------------- */

int maad_handshakes_open(maad_handshakes *h, void *ctx, void *sock, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://maad-handshake-%p", sock);
    void *mon = NULL;
    if (zmq_socket_monitor(sock, ep,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0 ||
        !(mon = zmq_socket(ctx, ZMQ_PAIR)) || zmq_connect(mon, ep) != 0) {
        snprintf(err, errlen, "handshake monitor: %s", zmq_strerror(zmq_errno()));
        if (mon)
            zmq_close(mon);
        return MAA_ERR;
    }
    int linger = 0;
    zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof linger);
    h->monitor = mon;
    return MAA_OK;
}

void maad_handshakes_close(maad_handshakes *h)
{
    if (h->monitor)
        zmq_close(h->monitor);
    h->monitor = NULL;
}

/* One event of the monitor: 0 when none was waiting, else
 * MAAD_HANDSHAKE_FAILED or MAAD_HANDSHAKE_OK with "ENDPOINT: what". */
static int handshake_event(void *mon, char *why, size_t n)
{
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    zmq_msg_init(&addr);
    int got = 0;
    if (zmq_msg_recv(&ev, mon, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&ev) &&
        zmq_msg_recv(&addr, mon, 0) >= 0 && zmq_msg_size(&ev) == 6) {
        /* The event: a 16-bit id and a 32-bit value, in host order. */
        uint16_t id;
        uint32_t value;
        memcpy(&id, zmq_msg_data(&ev), 2);
        memcpy(&value, (const char *)zmq_msg_data(&ev) + 2, 4);
        const char *what;
        if (id == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            what = NULL;
        else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            what = "maad refused this subscriber's key: its public certificate (NAME.key) is "
                   "not in maad's publish.curve_clients";
        else if (id == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
                 value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
            what = "security mismatch: one side uses CURVE and the other plain mode "
                   "(maad's publish.curve_secret_key against this subscriber's keys)";
        else
            /* A server that cannot read our HELLO (sealed for another key)
             * closes without a word: the usual cause of a failure with
             * no detail. */
            what = "the handshake failed: is the server key given the public key of the maad "
                   "at this endpoint?";
        snprintf(why, n, "%.*s: %s", (int)zmq_msg_size(&addr),
                 (const char *)zmq_msg_data(&addr), what ? what : "handshake succeeded");
        got = what ? MAAD_HANDSHAKE_FAILED : MAAD_HANDSHAKE_OK;
    }
    zmq_msg_close(&ev);
    zmq_msg_close(&addr);
    return got;
}

int maad_handshakes_poll(maad_handshakes *h, void *sock, const char *endpoint, uint64_t now,
                         char *why, size_t n)
{
    int ev;
    while ((ev = handshake_event(h->monitor, why, n))) {
        if (ev == MAAD_HANDSHAKE_OK) {
            if (!h->failed[0])
                continue;
            h->failed[0] = '\0';
            return MAAD_HANDSHAKE_OK;
        }
        if (!h->retry_at)
            h->retry_at = now + 1000000000ull;
        if (strcmp(why, h->failed) != 0) {
            snprintf(h->failed, sizeof h->failed, "%s", why);
            return MAAD_HANDSHAKE_FAILED;
        }
    }
    if (h->retry_at && now >= h->retry_at) {
        h->retry_at = 0;
        /* ENOENT when libzmq has dropped the endpoint already: nothing to
         * undo. */
        zmq_disconnect(sock, endpoint);
        zmq_connect(sock, endpoint);
    }
    return 0;
}

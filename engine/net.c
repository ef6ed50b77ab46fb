/* net.c — the MAA network of contract §2 (paper Table I) as data. */
#include <stdio.h>
#include <string.h>

#include "engine/backend.h"

static void conv(maa_conv_desc *l, const char *name, const char *bn, int cin,
                 int cout, int kh, int kw, int stride, int ph, int pw,
                 int bias, maa_act act)
{
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->bn, sizeof l->bn, "%s", bn);
    l->cin = cin;
    l->cout = cout;
    l->kh = kh;
    l->kw = kw;
    l->stride = stride;
    l->ph = ph;
    l->pw = pw;
    l->has_bias = bias;
    l->act = act;
}

static void res_block(maa_conv_desc *l, int k, int ch)
{
    char n1[16], n2[16], b1[20], b2[20];
    snprintf(n1, sizeof n1, "g.res.%d.conv1", k);
    snprintf(n2, sizeof n2, "g.res.%d.conv2", k);
    snprintf(b1, sizeof b1, "g.res.%d.bn1", k);
    snprintf(b2, sizeof b2, "g.res.%d.bn2", k);
    conv(&l[0], n1, b1, ch, ch, 3, 3, 1, 1, 1, 0, MAA_ACT_RELU);
    conv(&l[1], n2, b2, ch, ch, 3, 3, 1, 1, 1, 0, MAA_ACT_NONE);
}

void maa_net_describe(const maa_model_info *info,
                      maa_conv_desc layers[MAA_NET_LAYERS])
{
    const int C = info->channels, b = info->g_base, a = info->d_base;
    maa_conv_desc *l = layers;

    conv(&l[0], "g.enc.0", "g.enc.0.bn", C, b, 1, 7, 1, 0, 3, 0, MAA_ACT_RELU);
    conv(&l[1], "g.enc.1", "g.enc.1.bn", b, 2 * b, 7, 1, 1, 3, 0, 0, MAA_ACT_RELU);
    conv(&l[2], "g.enc.2", "g.enc.2.bn", 2 * b, 4 * b, 3, 3, 2, 1, 1, 0, MAA_ACT_RELU);
    conv(&l[3], "g.enc.3", "g.enc.3.bn", 4 * b, 8 * b, 3, 3, 2, 1, 1, 0, MAA_ACT_RELU);
    conv(&l[4], "g.enc.4", "g.enc.4.bn", 8 * b, 16 * b, 3, 3, 2, 1, 1, 0, MAA_ACT_RELU);
    for (int k = 0; k < 6; k++)
        res_block(&l[maa_net_res(k)], k, 16 * b);
    /* The gates are raw pre-activations: the LSTM nonlinearities follow. */
    conv(&l[MAA_NET_MEM], "g.mem", "", 32 * b, 64 * b, 3, 3, 1, 1, 1, 1, MAA_ACT_NONE);
    for (int k = 0; k < 3; k++) {
        maa_conv_desc *d = &l[MAA_NET_DEC + k];
        char name[16], bn[20];
        snprintf(name, sizeof name, "g.dec.%d", k);
        snprintf(bn, sizeof bn, "g.dec.%d.bn", k);
        conv(d, name, bn, (16 * b) >> k, (8 * b) >> k, 3, 3, 2, 1, 1, 0, MAA_ACT_RELU);
        d->transposed = 1;
        d->out_pad = 1;
    }
    conv(&l[MAA_NET_DEC + 3], "g.dec.3", "g.dec.3.bn", 2 * b, b, 7, 1, 1, 3, 0, 0, MAA_ACT_RELU);
    conv(&l[MAA_NET_DEC + 4], "g.dec.4", "", b, C, 1, 7, 1, 0, 3, 1, MAA_ACT_TANH);

    conv(&l[MAA_NET_D + 0], "d.0", "", C, a, 4, 4, 2, 1, 1, 1, MAA_ACT_LRELU);
    conv(&l[MAA_NET_D + 1], "d.1", "d.1.bn", a, 2 * a, 4, 4, 2, 1, 1, 0, MAA_ACT_LRELU);
    conv(&l[MAA_NET_D + 2], "d.2", "d.2.bn", 2 * a, 4 * a, 4, 4, 2, 1, 1, 0, MAA_ACT_LRELU);
    conv(&l[MAA_NET_D + 3], "d.3", "d.3.bn", 4 * a, 8 * a, 4, 4, 1, 1, 1, 0, MAA_ACT_LRELU);
    conv(&l[MAA_NET_D + 4], "d.4", "", 8 * a, 1, 4, 4, 1, 1, 1, 1, MAA_ACT_NONE);
    conv(&l[MAA_NET_D + 5], "d.5", "", 1, 1, 4, 4, 1, 1, 1, 1, MAA_ACT_NONE);
}

void maa_conv_out_size(const maa_conv_desc *l, int h, int w, int *ho, int *wo)
{
    if (l->transposed) {
        *ho = (h - 1) * l->stride - 2 * l->ph + l->kh + l->out_pad;
        *wo = (w - 1) * l->stride - 2 * l->pw + l->kw + l->out_pad;
    } else {
        *ho = (h + 2 * l->ph - l->kh) / l->stride + 1;
        *wo = (w + 2 * l->pw - l->kw) / l->stride + 1;
    }
}

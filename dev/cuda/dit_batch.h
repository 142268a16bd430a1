// The DiT's packed batches for the dev/cuda checks of the kernels that read
// them (patchify, flow, edm): per-sample descriptors (DiTSample), frame mask and the
// rows tokrow / patrow, as train_dit.cu's dit_set_batch sets them up.
#pragma once
#include <algorithm>
#include <vector>
#include "../../llmc/model/dit_config.h"
#include "../../llmc/kernels/patchify.cuh"

struct SampleSpec {
    int T, H, W;
    bool i2v;  // a frame mask with frame 0 clean (image-to-video)
    float t;   // flow time
};

// A packed batch as dit_set_batch sets it up.
struct PBatch {
    int B = 0, N = 0, Np = 0;
    std::vector<DiTGrid> grids;
    std::vector<DiTSample> s;
    std::vector<int> frame_mask, tokrow, patrow;
    long long lat = 0, out = 0, max_patch_elems = 0, max_out_elems = 0, noisy_lat = 0;
};

static PBatch make_batch(const DiTConfig& c, const std::vector<SampleSpec>& ss) {
    PBatch g;
    g.B = (int)ss.size();
    int tok = 0, pat = 0, fr = 0;
    for (int b = 0; b < g.B; b++) {
        const DiTGrid gr = dit_grid(c, ss[b].T, ss[b].H, ss[b].W);
        g.grids.push_back(gr);
        DiTSample s;
        s.T = gr.T; s.H = gr.H; s.W = gr.W;
        s.Tp = gr.Tp; s.Hp = gr.Hp; s.Wp = gr.Wp;
        s.tok0 = tok; s.pat0 = pat; s.frame0 = fr;
        s.n_noisy = 0;
        for (int f = 0; f < gr.T; f++) {
            const int m = ss[b].i2v && f == 0 ? 0 : 1;
            g.frame_mask.push_back(m);
            s.n_noisy += m;
        }
        s.lat0 = g.lat; s.out0 = g.out;
        s.t = ss[b].t;
        s.grad_scale = (float)(2.0 / ((double)s.n_noisy * c.in_channels * gr.H * gr.W * g.B));
        g.s.push_back(s);
        const long long thw = (long long)gr.T * gr.H * gr.W;
        g.lat += c.in_channels * thw;
        g.out += c.out_channels * thw;
        g.noisy_lat += (long long)c.in_channels * s.n_noisy * gr.H * gr.W;
        g.max_patch_elems = std::max(g.max_patch_elems, (long long)gr.n_patch * c.in_channels * dit_patch_size(c));
        g.max_out_elems = std::max(g.max_out_elems, c.out_channels * thw);
        for (int j = 0; j < gr.L; j++) {
            bool noisy;
            if (!ss[b].i2v) noisy = true;
            else if (j == 0 || j == gr.L - 1) noisy = false;
            else noisy = g.frame_mask[fr + ((j - 1) / (gr.Hp * gr.Wp)) * c.patch_t] != 0;
            const int row = 2 * b + (noisy ? 0 : 1);
            g.tokrow.push_back(row);
            if (j > 0 && j < gr.L - 1) g.patrow.push_back(row);
        }
        tok += gr.L;
        pat += gr.n_patch;
        fr += gr.T;
    }
    g.N = tok;
    g.Np = pat;
    return g;
}

// a DiTConfig with the fields these kernels read
static DiTConfig config(int C, int Cin, int Cout, int pt, int ph, int pw) {
    DiTConfig c;
    c.d_model = C;
    c.in_channels = Cin;
    c.out_channels = Cout;
    c.patch_t = pt;
    c.patch_h = ph;
    c.patch_w = pw;
    return c;
}

// The losses' CPU references (flow, edm): f(s, p, e, l) for every value of the final linear's
// patch-layout output that has a target: patch token p of sample s, its value e (in the
// [Np, P*Cout] output), latent index l; channels >= Cin, padding and clean frames have none.
template <class F>
static void for_each_loss_value(const PBatch& g, const DiTConfig& c, F f) {
    const int pt = c.patch_t, ph = c.patch_h, pw = c.patch_w, Cin = c.in_channels, Cout = c.out_channels;
    const size_t PC = (size_t)dit_patch_size(c) * Cout;
    for (int b = 0; b < g.B; b++) {
        const DiTSample& s = g.s[b];
        for (int lp = 0; lp < s.Tp * s.Hp * s.Wp; lp++) {
            const int i = lp / (s.Hp * s.Wp), r = (lp / s.Wp) % s.Hp, cc = lp % s.Wp;
            const size_t p = (size_t)s.pat0 + lp;
            for (int a = 0; a < pt; a++)
                for (int hh = 0; hh < ph; hh++)
                    for (int ww = 0; ww < pw; ww++)
                        for (int co = 0; co < Cin; co++) {
                            const int tt = i * pt + a, y = r * ph + hh, x = cc * pw + ww;
                            if (tt >= s.T || y >= s.H || x >= s.W || !g.frame_mask[s.frame0 + tt]) continue;
                            f(s, p, p * PC + (size_t)((a * ph + hh) * pw + ww) * Cout + co,
                              s.lat0 + (((size_t)co * s.T + tt) * s.H + y) * s.W + x);
                        }
        }
    }
}

// Patches and tokens of the DiT's packed batches (token order and padding rules:
// llmc/model/dit_config.h, dev/DESIGN.md "DiT").
// - patchify: latent [Cin, T, H, W] per sample -> patch vectors [Np, Cin*P]
//   (Conv3d weight order ((ci*pt + tp)*ph + hp)*pw + wp; tokens t-major, then h,
//   then w; zero padding at the end of each axis up to the patch size), fused with
//   the network's input: rectified flow x_t = (1 - t) x0 + t eps on noisy frames
//   (clean frames, and every frame when eps is null, take x0 as it is); EDM
//   (sigma_data > 0, t = sigma) c_in (x0 + sigma eps) with c_in = 1 / sqrt(sigma^2 +
//   sigma_data^2) on noisy frames (eps null: c_in x0), x0 / sigma_data on clean
//   frames (llmc/model/dit_objective.h).
// - tokens: [start, patch tokens, end] per sample, assembled from the patch
//   embeddings and the two learned vectors; backward: the patch rows' gradient
//   and the start/end vectors' gradients (summed over samples in order).
// - patch rows <-> token rows (the final layer drops start and end).
// - unpatchify: final-layer output [Np, P*Cout] (index ((tp*ph + hp)*pw + wp)*Cout
//   + co) -> [Cout, T, H, W] per sample, cropped.
// Per-sample geometry comes in a device array of DiTSample; sample b's kernels
// run on blockIdx.y = b where the work is per latent element.
#pragma once
#include "../core/cuda_common.h"

struct DiTSample {
    int T, H, W;          // latent shape
    int Tp, Hp, Wp;       // patch grid (T', H', W'); L = Tp*Hp*Wp + 2 tokens
    int tok0, pat0;       // first token / first patch token of the sample in the packed batch
    int frame0;           // first entry of the sample in the packed frame mask
    int n_noisy;          // noisy frames
    long long lat0;       // offset of the sample in x0/eps (packed [Cin, T, H, W])
    long long out0;       // offset of the sample in v_pred (packed [Cout, T, H, W])
    float t;              // rf: flow time in [0, 1]; edm: sigma
    float grad_scale;     // d loss / d v_pred per squared-error term: 2 / (n_noisy * Cin * H * W * B)
    // context parallel (llmc/dist/context_parallel.h): the sample's tokens [j0, j1) this entry holds,
    // tok0 and pat0 then where its token 0 and patch 0 would be; the defaults: all of them
    int j0 = 0, j1 = 1 << 30;
};

struct PatchGeom {
    int Cin, Cout, pt, ph, pw;
};

// The losses' walk over patch token p's P*Cout output values (flow.cuh, edm.cuh), one warp per
// token, this lane's values e: where e is a latent value (channel < Cin, inside the sample, on
// a noisy frame, at index l of x0 / eps) err(e, l, &g) gives the value's squared error and its
// gradient g; dout[p] is written (0 elsewhere) and the lane's sum of squared errors returned.
template <class Err>
__device__ __forceinline__ float patch_token_loss(floatX* __restrict__ dout, const DiTSample& s, int p, const PatchGeom& pg,
                                                  const int* __restrict__ frame_mask, int lane, Err err) {
    const int lp = p - s.pat0;
    const int i = lp / (s.Hp * s.Wp), r = (lp / s.Wp) % s.Hp, cc = lp % s.Wp;
    const int PC = pg.pt * pg.ph * pg.pw * pg.Cout;
    float sq = 0.0f;
    for (int e = lane; e < PC; e += 32) {
        const int co = e % pg.Cout, q = e / pg.Cout;
        const int ww = q % pg.pw, hh = (q / pg.pw) % pg.ph, a = q / (pg.pw * pg.ph);
        const int tt = i * pg.pt + a, y = r * pg.ph + hh, x = cc * pg.pw + ww;
        float g = 0.0f;
        if (co < pg.Cin && tt < s.T && y < s.H && x < s.W && frame_mask[s.frame0 + tt])
            sq += err((size_t)p * PC + e, s.lat0 + (((long long)co * s.T + tt) * s.H + y) * s.W + x, &g);
        dout[(size_t)p * PC + e] = (floatX)g;
    }
    return sq;
}

// EDM's input scale c_in = 1 / sqrt(sigma^2 + sigma_data^2).
__device__ __forceinline__ float edm_c_in(float sigma, float sigma_data) {
    return 1.0f / sqrtf(sigma * sigma + sigma_data * sigma_data);
}

// One thread per element of a patch vector; blockIdx.y = sample. EDM: the EDM input (sigma_data).
template <bool EDM>
__global__ static void patchify_kernel(floatX* __restrict__ patches, const float* __restrict__ x0,
                                       const float* __restrict__ eps, const int* __restrict__ frame_mask,
                                       const DiTSample* __restrict__ samples, PatchGeom pg, float sigma_data) {
    const DiTSample s = samples[blockIdx.y];
    const int K = pg.Cin * pg.pt * pg.ph * pg.pw;
    const long long n = (long long)s.Tp * s.Hp * s.Wp * K;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int p = (int)(idx / K), e = (int)(idx % K);
    if (p + 1 < s.j0 || p + 1 >= s.j1) return;   // patch p is token p + 1: another part's
    const int ww = e % pg.pw, hh = (e / pg.pw) % pg.ph, a = (e / (pg.pw * pg.ph)) % pg.pt, ci = e / (pg.pw * pg.ph * pg.pt);
    const int i = p / (s.Hp * s.Wp), r = (p / s.Wp) % s.Hp, cc = p % s.Wp;
    const int tt = i * pg.pt + a, y = r * pg.ph + hh, x = cc * pg.pw + ww;
    float val = 0.0f;
    if (tt < s.T && y < s.H && x < s.W) {
        const long long l = s.lat0 + (((long long)ci * s.T + tt) * s.H + y) * s.W + x;
        val = x0[l];
        if (EDM) {
            if (!frame_mask[s.frame0 + tt]) val = val / sigma_data;
            else val = edm_c_in(s.t, sigma_data) * (eps ? val + s.t * eps[l] : val);
        } else if (eps && frame_mask[s.frame0 + tt]) {
            val = (1.0f - s.t) * val + s.t * eps[l];
        }
    }
    patches[((long long)s.pat0 + p) * K + e] = (floatX)val;
}

// max_patch_elems: the largest sample's Tp*Hp*Wp*Cin*P. edm_sigma_data: 0 for rectified flow, else EDM's sigma_data.
static void patchify_forward(floatX* patches, const float* x0, const float* eps, const int* frame_mask,
                             const DiTSample* samples, int B, long long max_patch_elems, const PatchGeom& pg,
                             cudaStream_t stream, float edm_sigma_data = 0.0f) {
    NVTX_RANGE_FN();
    dim3 grid(ceil_div(max_patch_elems, 256), B);
    if (edm_sigma_data > 0.0f)
        patchify_kernel<true><<<grid, 256, 0, stream>>>(patches, x0, eps, frame_mask, samples, pg, edm_sigma_data);
    else
        patchify_kernel<false><<<grid, 256, 0, stream>>>(patches, x0, eps, frame_mask, samples, pg, 0.0f);
    cudaLaunchCheck();
}

// resid [N, C] = [start, xf rows of the sample, end] per sample; one thread per 16 bytes.
// tokrow[i] >> 1 is token i's sample (tokrow: 2b or 2b+1).
__global__ static void tokens_assemble_kernel(floatX* __restrict__ resid, const floatX* __restrict__ xf,
                                              const floatX* __restrict__ start, const floatX* __restrict__ end,
                                              const int* __restrict__ tokrow, const DiTSample* __restrict__ samples,
                                              int N, int C) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)N * C) return;
    const int i = (int)(idx / C), c = (int)(idx % C);
    const DiTSample& s = samples[tokrow[i] >> 1];
    const int j = i - s.tok0, L = s.Tp * s.Hp * s.Wp + 2;
    const floatX* src = j == 0 ? start + c : j == L - 1 ? end + c : xf + ((size_t)s.pat0 + j - 1) * C + c;
    store128(resid + idx, load128(src));
}

static void tokens_assemble_forward(floatX* resid, const floatX* xf, const floatX* start, const floatX* end,
                                    const int* tokrow, const DiTSample* samples, int N, int C, cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)N * C * 2 * sizeof(floatX));   // patch rows, token rows
    tokens_assemble_kernel<<<ceil_div((size_t)N * C / x128::size, 256), 256, 0, stream>>>(resid, xf, start, end, tokrow,
                                                                                           samples, N, C);
    cudaLaunchCheck();
}

// patch rows <-> token rows: patch p of sample b is token p + 2b + 1 (its patch p - pat0 is token
// p - pat0 + tok0 + 1 of the batch, which holds for the parts of samples context parallelism makes too).
// to_patches: dst[p] = src[token(p)]; else dst[token(p)] = src[p] (other rows untouched).
__global__ static void patch_rows_kernel(floatX* __restrict__ dst, const floatX* __restrict__ src,
                                         const int* __restrict__ patrow, const DiTSample* __restrict__ samples, int Np, int C, bool to_patches) {
    const size_t idx = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * x128::size;
    if (idx >= (size_t)Np * C) return;
    const int p = (int)(idx / C), c = (int)(idx % C);
    const DiTSample& s = samples[patrow[p] >> 1];
    const size_t tok = ((size_t)(p - s.pat0 + s.tok0) + 1) * C + c;
    if (to_patches) store128(dst + idx, load128(src + tok));
    else store128(dst + tok, load128(src + idx));
}

static void tokens_to_patches(floatX* patches, const floatX* tokens, const int* patrow, const DiTSample* samples, int Np, int C,
                              cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)Np * C * 2 * sizeof(floatX));   // the rows read and written
    patch_rows_kernel<<<ceil_div((size_t)Np * C / x128::size, 256), 256, 0, stream>>>(patches, tokens, patrow, samples, Np, C, true);
    cudaLaunchCheck();
}
static void patches_to_tokens(floatX* tokens, const floatX* patches, const int* patrow, const DiTSample* samples, int Np, int C,
                              cudaStream_t stream) {
    NVTX_RANGE_FN();
    ProfileWork pw(0, (double)Np * C * 2 * sizeof(floatX));   // the rows read and written
    patch_rows_kernel<<<ceil_div((size_t)Np * C / x128::size, 256), 256, 0, stream>>>(tokens, patches, patrow, samples, Np, C, false);
    cudaLaunchCheck();
}

// dstart[c] += sum_b dresid[first token of b, c]; dend likewise with the last tokens (order b = 0, 1, ...).
__global__ static void start_end_backward_kernel(float* __restrict__ dstart, float* __restrict__ dend,
                                                 const floatX* __restrict__ dresid, const DiTSample* __restrict__ samples,
                                                 int B, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float s = 0.0f, e = 0.0f;
    for (int b = 0; b < B; b++) {
        const DiTSample& sm = samples[b];
        const int L = sm.Tp * sm.Hp * sm.Wp + 2;
        if (sm.j0 == 0) s += (float)dresid[(size_t)sm.tok0 * C + c];              // the part that holds the start token
        if (L - 1 < sm.j1) e += (float)dresid[((size_t)sm.tok0 + L - 1) * C + c];   // and the end token

    }
    dstart[c] += s;
    dend[c] += e;
}

// Backward of tokens_assemble_forward: dxf [Np, C] (written) and dstart, dend (+=).
static void tokens_assemble_backward(floatX* dxf, float* dstart, float* dend, const floatX* dresid, const int* patrow,
                                     const DiTSample* samples, int B, int Np, int C, cudaStream_t stream) {
    NVTX_RANGE_FN();
    tokens_to_patches(dxf, dresid, patrow, samples, Np, C, stream);
    start_end_backward_kernel<<<ceil_div(C, 128), 128, 0, stream>>>(dstart, dend, dresid, samples, B, C);
    cudaLaunchCheck();
}

// v_pred (fp32, packed [Cout, T, H, W] per sample) from the final linear's output; one thread per element.
__global__ static void unpatchify_kernel(float* __restrict__ v_pred, const floatX* __restrict__ out,
                                         const DiTSample* __restrict__ samples, PatchGeom pg) {
    const DiTSample s = samples[blockIdx.y];
    const long long n = (long long)pg.Cout * s.T * s.H * s.W;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const int x = (int)(idx % s.W), y = (int)((idx / s.W) % s.H), tt = (int)((idx / ((long long)s.W * s.H)) % s.T);
    const int co = (int)(idx / ((long long)s.W * s.H * s.T));
    const int p = ((tt / pg.pt) * s.Hp + y / pg.ph) * s.Wp + x / pg.pw;
    const int q = ((tt % pg.pt) * pg.ph + y % pg.ph) * pg.pw + x % pg.pw;
    const int PC = pg.pt * pg.ph * pg.pw * pg.Cout;
    if (p + 1 < s.j0 || p + 1 >= s.j1) return;   // another part's patch
    v_pred[s.out0 + idx] = (float)out[((long long)s.pat0 + p) * PC + (long long)q * pg.Cout + co];
}

// max_out_elems: the largest sample's Cout*T*H*W.
static void unpatchify(float* v_pred, const floatX* out, const DiTSample* samples, int B, long long max_out_elems,
                       const PatchGeom& pg, cudaStream_t stream) {
    NVTX_RANGE_FN();
    dim3 grid(ceil_div(max_out_elems, 256), B);
    unpatchify_kernel<<<grid, 256, 0, stream>>>(v_pred, out, samples, pg);
    cudaLaunchCheck();
}

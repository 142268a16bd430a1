/*
Check and benchmark of llmc/model/adamw.cuh and the global norm of llmc/core/reduce.cuh:
  adamw_update (torch.optim.AdamW semantics, step t 1-based, gradient scaled by the clip factor s):
      g = grad * s; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
      p -= lr wd p; p -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps); params = floatX(p)
  global_norm_squared: out = sum of grad^2 (deterministic two-pass reduction)
Validated against a CPU reference (double) at small sizes (every element; sizes
not a multiple of 4 take the kernels' tail paths) and at the size of all gpt-1b
parameters (AdamW: 32 slices of 4096 elements spread over the buffer; the norm:
the whole buffer, summed on the host in chunks); timed at the gpt-1b size, both
as one call and per tensor of the gpt-1b layout (as train_gpt calls it).
Versions (the same adamw_element, so the same bits, checked at the small sizes):
  1  adamw_kernel_v1 below: a thread per group of 4 elements, bf16 weights stored one by one
  U  llmc's adamw_kernel<U> (U = 1, 2, 4): U groups a thread, loads first, one 8-byte store of
     the bf16 weights, streaming cache hints; the trainers run ADAMW_GROUPS

  make dev/cuda/adamw && ./dev/cuda/adamw
*/
#include "common.h"
#include "../../llmc/model/gpt_config.h"
#include "../../llmc/core/reduce.cuh"
#include "../../llmc/model/adamw.cuh"

// version 1 (what llmc ran before adamw_kernel<U>)
__global__ static void adamw_kernel_v1(floatX* params, float* master, const float* grads, float* m, float* v, size_t n,
                                       float lr, float beta1, float beta2, float bc1, float bc2, float eps, float wd,
                                       float grad_scale) {
    const size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) * 4;
    if (i >= n) return;
    if (i + 4 <= n) {
        float4 g = *reinterpret_cast<const float4*>(grads + i), mm = *reinterpret_cast<float4*>(m + i);
        float4 vv = *reinterpret_cast<float4*>(v + i), p = *reinterpret_cast<float4*>(master + i);
        float* gp = &g.x; float* mp = &mm.x; float* vp = &vv.x; float* pp = &p.x;
        for (int k = 0; k < 4; k++) {
            pp[k] = adamw_element(gp[k] * grad_scale, mp[k], vp[k], pp[k], lr, beta1, beta2, bc1, bc2, eps, wd);
            params[i + k] = (floatX)pp[k];
        }
        *reinterpret_cast<float4*>(m + i) = mm;
        *reinterpret_cast<float4*>(v + i) = vv;
        *reinterpret_cast<float4*>(master + i) = p;
    } else {
        for (size_t k = i; k < n; k++) {
            master[k] = adamw_element(grads[k] * grad_scale, m[k], v[k], master[k], lr, beta1, beta2, bc1, bc2, eps, wd);
            params[k] = (floatX)master[k];
        }
    }
}
// version u: 0 adamw_kernel_v1, else llmc's adamw_kernel<u> (u groups of 4 a thread)
static void adamw_version(int u, floatX* params, float* master, const float* grads, float* m, float* v, size_t n, float lr,
                          float beta1, float beta2, float eps, float wd, float grad_scale, int step) {
    if (u == 0) {
        const float bc1 = 1.0f - powf(beta1, (float)step), bc2 = 1.0f - powf(beta2, (float)step);
        adamw_kernel_v1<<<ceil_div(ceil_div((long long)n, 4), 256), 256>>>(params, master, grads, m, v, n, lr, beta1, beta2, bc1,
                                                                          bc2, eps, wd, grad_scale);
        cudaLaunchCheck();
    } else if (u == 1) adamw_update<1>(params, master, grads, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, step, 0);
    else if (u == 2) adamw_update<2>(params, master, grads, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, step, 0);
    else adamw_update<4>(params, master, grads, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, step, 0);
}
static const int ADAMW_VERSIONS[] = {0, 1, 2, 4};
static std::string adamw_version_name(int u) { return u == 0 ? "version 1" : strf("U=%d", u); }

struct AdamHyper {
    float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.8f;
    int step = 7;
};

// slices [off, off + len) of a flat device buffer, concatenated
template <class T>
static std::vector<float> download_slices(const T* d, const std::vector<size_t>& offs, size_t len) {
    std::vector<float> out;
    for (size_t o : offs) {
        std::vector<float> one = download(d, len, o);
        out.insert(out.end(), one.begin(), one.end());
    }
    return out;
}

static void run_case(size_t n, const char* label, size_t slices, size_t slice_len, bool timed,
                     const std::vector<ParamTensor>* layout, Rng* rng) {
    const std::string shape = strf("n=%zu%s", n, label);
    const AdamHyper h;
    floatX* params = dev_alloc<floatX>(n);
    float *master = dev_alloc<float>(n), *grads = dev_alloc<float>(n), *m = dev_alloc<float>(n), *v = dev_alloc<float>(n);
    float *norm_scratch = dev_alloc<float>(GLOBAL_NORM_BLOCKS), *norm_out = dev_alloc<float>(1);
    fill_random(master, n, rng, 0.5f);                 // weights of all sizes: the decay term matters
    fill_random(grads, n, rng, 0.01f);
    fill_random(m, n, rng, 0.005f);
    fill_random(v, n, rng, 1e-4f, 0.0f, true);         // second moments are >= 0

    // ---- adamw_update on the slices (the whole buffer when slices == 1 and slice_len == n)
    std::vector<size_t> offs;
    for (size_t k = 0; k < slices; k++) offs.push_back(slices == 1 ? 0 : (n - slice_len) / (slices - 1) * k);
    offs.back() = n - slice_len;  // the last slice ends at n (the tail path)
    const std::vector<float> p0 = download_slices(master, offs, slice_len), g0 = download_slices(grads, offs, slice_len);
    const std::vector<float> m0 = download_slices(m, offs, slice_len), v0 = download_slices(v, offs, slice_len);
    // the versions' bits against the default's: the whole state, at the small sizes
    const bool versions = !timed;
    std::vector<float> full0[4];
    if (versions) {
        full0[0] = download(master, n); full0[1] = download(grads, n); full0[2] = download(m, n); full0[3] = download(v, n);
    }
    poison(params, n);
    adamw_update(params, master, grads, m, v, n, h.lr, h.beta1, h.beta2, h.eps, h.wd, h.grad_scale, h.step, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        const size_t k = p0.size();
        const double bc1 = 1.0 - pow((double)h.beta1, h.step), bc2 = 1.0 - pow((double)h.beta2, h.step);
        std::vector<double> rm(k), rv(k), rdelta(k), rp(k);
        for (size_t i = 0; i < k; i++) {
            const double g = (double)g0[i] * h.grad_scale;
            rm[i] = h.beta1 * (double)m0[i] + (1.0 - h.beta1) * g;
            rv[i] = h.beta2 * (double)v0[i] + (1.0 - h.beta2) * g * g;
            double p = p0[i];
            p -= (double)h.lr * h.wd * p;
            p -= h.lr * (rm[i] / bc1) / (sqrt(rv[i] / bc2) + h.eps);
            rp[i] = p;
            rdelta[i] = p - p0[i];
        }
        std::vector<float> p1 = download_slices(master, offs, slice_len), delta(k);
        for (size_t i = 0; i < k; i++) delta[i] = (float)((double)p1[i] - p0[i]);
        check("adamw_update", "m", shape, download_slices(m, offs, slice_len), rm, TOL_F32);
        check("adamw_update", "v", shape, download_slices(v, offs, slice_len), rv, TOL_F32);
        // the update is ~1e-3 of the weight: compare the change, not the weight (fp32 weights of ~0.5
        // resolve a change of ~1e-3 to ~1e-4 relative, hence 1e-3)
        check("adamw_update", "master_delta", shape, delta, rdelta, 1e-3);
        check("adamw_update", "params", shape, download_slices(params, offs, slice_len), rp, TOL_X);
    }
    if (versions) {
        const std::vector<float> want[4] = {download(master, n), download(m, n), download(v, n), download(params, n)};
        for (int ver : ADAMW_VERSIONS) {
            upload(master, full0[0].data(), n); upload(grads, full0[1].data(), n);
            upload(m, full0[2].data(), n); upload(v, full0[3].data(), n);
            poison(params, n);
            adamw_version(ver, params, master, grads, m, v, n, h.lr, h.beta1, h.beta2, h.eps, h.wd, h.grad_scale, h.step);
            cudaCheck(cudaDeviceSynchronize());
            const std::vector<float> got[4] = {download(master, n), download(m, n), download(v, n), download(params, n)};
            bool same = true;
            for (int k = 0; k < 4; k++) same = same && memcmp(got[k].data(), want[k].data(), n * sizeof(float)) == 0;
            check_true(same, "adamw_update %s %s: master, m, v, params bit for bit the default's", adamw_version_name(ver).c_str(),
                       shape.c_str());
        }
    }

    // ---- global_norm_squared over the (updated) gradients, which adamw does not modify
    poison(norm_scratch, GLOBAL_NORM_BLOCKS);
    poison(norm_out, 1);
    global_norm_squared(norm_out, grads, n, norm_scratch, 0);
    cudaCheck(cudaDeviceSynchronize());
    {
        double ss = 0.0;
        const size_t chunk = (size_t)1 << 26;
        for (size_t o = 0; o < n; o += chunk) {
            std::vector<float> g = download(grads, std::min(chunk, n - o), o);
            for (float x : g) ss += (double)x * x;
        }
        check("global_norm_squared", "out", shape, download(norm_out, 1), std::vector<double>{ss}, TOL_F32);
    }

    if (timed) {
        const double bytes = (double)n * (4 * sizeof(float) + 3 * sizeof(float) + sizeof(floatX));  // g,m,v,p read; m,v,p,params written
        for (int ver : ADAMW_VERSIONS) {   // (the trainers run U = ADAMW_GROUPS)
            const std::string tag = " [" + adamw_version_name(ver) + "]";
            float us = time_us([&] {
                adamw_version(ver, params, master, grads, m, v, n, h.lr, h.beta1, h.beta2, h.eps, h.wd, h.grad_scale, h.step);
            });
            report_bw("adamw_update (one call)" + tag, shape, us, bytes);
            if (layout) {
                us = time_us([&] {
                    for (const ParamTensor& t : *layout)
                        adamw_version(ver, params + t.offset, master + t.offset, grads + t.offset, m + t.offset, v + t.offset,
                                      t.numel, h.lr, h.beta1, h.beta2, h.eps, t.decay ? h.wd : 0.0f, h.grad_scale, h.step);
                });
                report_bw(strf("adamw_update (per tensor, %zu calls)", layout->size()) + tag, shape, us, bytes);
            }
        }
        float us = time_us([&] { global_norm_squared(norm_out, grads, n, norm_scratch, 0); });
        report_bw("global_norm_squared", shape, us, (double)n * sizeof(float));
    }
    cudaCheck(cudaFree(params)); cudaCheck(cudaFree(master)); cudaCheck(cudaFree(grads)); cudaCheck(cudaFree(m));
    cudaCheck(cudaFree(v)); cudaCheck(cudaFree(norm_scratch)); cudaCheck(cudaFree(norm_out));
}

int main() {
    print_banner("adamw");
    Rng rng;
    rng_seed(&rng, 1234);
    run_case(1000003, "", 1, 1000003, false, nullptr, &rng);  // n % 4 == 3: tail paths
    run_case(13, "", 1, 13, false, nullptr, &rng);
    GPTConfig cfg;
    gpt_preset("gpt-1b", &cfg);
    gpt_config_finalize(&cfg);
    const std::vector<ParamTensor> layout = gpt_param_layout(cfg);
    run_case(layout_numel(layout), " (gpt-1b)", 32, 4096, true, &layout, &rng);
    return finish("adamw");
}

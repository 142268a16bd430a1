// GPU test of train_gpt.cu against the PyTorch reference tensors in test/data
// (written by dev/reference/gpt.py): logits, loss, every parameter gradient,
// the grad norm, 10 AdamW steps, and bit-identical repeats; SFT batches (targets -100
// off the loss mask: the loss is the mean over the others), one conversation a row and packed
// rows (positions: RoPE and attention per conversation); activation recompute; context
// parallel simulated on one GPU (--cp N with one process: the ring of llmc/attention/ring_attention.cuh).
// Built twice: test/test_gpt (bf16 compute, the trainer's default) and
// test/test_gpt_fp32 (-DENABLE_FP32, everything fp32: tighter tolerances).
#define TRAIN_GPT_NO_MAIN
#include "../train_gpt.cu"
#include "gpt_reference.h"

// Relative error ||gpu - ref|| / ||ref|| allowed per check. bf16 holds ~3
// significant digits (unit roundoff 2^-8 = 0.4%); the errors compound through
// the layers, and gradients of the small tensors (norm weights) see the most.
// The fp32 build runs the same kernels in fp32 with non-TF32 cuBLAS.
#if defined(ENABLE_FP32)
static const double TOL_LOGITS = 1e-4, TOL_LOSS = 1e-5, TOL_GRAD = 1e-4, TOL_STEPS = 1e-4;
#else
static const double TOL_LOGITS = 2e-2, TOL_LOSS = 5e-3, TOL_GRAD = 5e-2, TOL_STEPS = 1e-2;
#endif

static int n_pass = 0, n_fail = 0;
static void check(const std::string& name, double err, double tol) {
    const bool ok = err <= tol;
    printf("%s gpt_gpu_%s/%s rel_err=%.3e tol=%.0e\n", ok ? "PASS" : "FAIL", PRECISION_NAME, name.c_str(), err, tol);
    (ok ? n_pass : n_fail)++;
}


// The targets the loss counts (SFT files: not -100); the loss is their mean.
static int counted_targets(const int* y, int n) { return (int)std::count_if(y, y + n, [](int t) { return t >= 0; }); }

// Runs `steps` AdamW steps from the reference init; returns the losses.
static std::vector<float> train_steps(GPT* g, const std::vector<float>& init, const int* x, const int* y, const int* pos, int B, int T,
                                      const OptimConfig& oc, int steps) {
    gpt_set_params(g, init.data());
    std::vector<float> losses;
    for (int s = 0; s < steps; s++) {
        gpt_zero_grad(g);
        const int n = counted_targets(y, B * T);
        gpt_forward(g, x, y, B, T, true, 1.0f / n, pos);
        gpt_backward(g);
        losses.push_back((float)(gpt_loss_sum(g) / n));
        gpt_update(g, oc, oc.lr);
    }
    cudaCheck(cudaStreamSynchronize(g->stream));
    return losses;
}

static void run_file(const std::string& path) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    TensorFile tf = tensorfile_read(path);
    GPTConfig cfg = gpt_config_from_reference(tf);
    const NamedTensor& tokens = tf.get("tokens");
    const int B = tokens.shape[0], T = tokens.shape[1], BT = B * T, V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    const int* x = tf.i32("tokens").data();
    const int* y = tf.i32("targets").data();
    const int* pos = tf.has("positions") ? tf.i32("positions").data() : nullptr;   // packed rows (gpt_sft.mgt)

    GPT g;
    cudaCheck(cudaStreamCreate(&g.stream));
    gpt_build(&g, cfg, B, T);
    std::vector<float> init(g.num_params);
    for (const ParamTensor& p : g.layout) {
        const std::vector<float>& v = tf.f32(p.name);
        if (v.size() != p.numel) fail("%s: tensor %s has %zu values (expected %zu)", path.c_str(), p.name.c_str(), v.size(), p.numel);
        std::copy(v.begin(), v.end(), init.begin() + p.offset);
    }
    gpt_set_params(&g, init.data());

    // forward only: logits and loss
    gpt_forward(&g, x, y, B, T, false, 0.0f, pos);
    const int counted = counted_targets(y, BT);
    const float loss = (float)(gpt_loss_sum(&g) / counted);
    std::vector<floatX> lx((size_t)BT * Vp);
    cudaCheck(cudaMemcpy(lx.data(), g.act.logits, lx.size() * sizeof(floatX), cudaMemcpyDeviceToHost));
    std::vector<float> logits((size_t)BT * V);
    for (int r = 0; r < BT; r++)
        for (int c = 0; c < V; c++) logits[(size_t)r * V + c] = (float)lx[(size_t)r * Vp + c];
    check(name + "/logits", rel_error(logits.data(), tf.f32("logits").data(), logits.size()), TOL_LOGITS);
    check(name + "/loss", rel_error(&loss, tf.f32("loss").data(), 1), TOL_LOSS);

    // forward + backward: every gradient
    gpt_zero_grad(&g);
    gpt_forward(&g, x, y, B, T, true, 1.0f / counted, pos);
    gpt_backward(&g);
    const float norm = params_grad_norm(&g, g.stream);
    std::vector<float> grads(g.num_params);
    cudaCheck(cudaMemcpy(grads.data(), g.grads, grads.size() * sizeof(float), cudaMemcpyDeviceToHost));
    for (const ParamTensor& p : g.layout)
        check(name + "/grad." + p.name, rel_error(grads.data() + p.offset, tf.f32("grad." + p.name).data(), p.numel), TOL_GRAD);
    check(name + "/grad_norm", rel_error(&norm, tf.f32("grad_norm").data(), 1), TOL_GRAD);
    {
        // padded vocabulary rows never receive gradient
        const ParamTensor* wte = gpt_find_param(g.layout, "wte");
        double pad = 0;
        for (size_t k = (size_t)V * cfg.d_model; k < wte->numel; k++) pad += fabs(grads[wte->offset + k]);
        check(name + "/padded_rows_zero_grad", pad, 0.0);
    }

    // 10 AdamW steps on the same batch, then the same again: bit-identical
    const std::vector<float>& tr = tf.f32("train");
    OptimConfig oc;
    oc.lr = tr[0]; oc.beta1 = tr[1]; oc.beta2 = tr[2]; oc.eps = tr[3]; oc.weight_decay = tr[4]; oc.grad_clip = tr[5];
    const std::vector<float>& ref_losses = tf.f32("losses");
    std::vector<float> l1 = train_steps(&g, init, x, y, pos, B, T, oc, (int)ref_losses.size());
    check(name + "/10_step_losses", rel_error(l1.data(), ref_losses.data(), l1.size()), TOL_STEPS);
    std::vector<float> l2 = train_steps(&g, init, x, y, pos, B, T, oc, (int)ref_losses.size());
    const bool same = memcmp(l1.data(), l2.data(), l1.size() * sizeof(float)) == 0;
    printf("%s gpt_gpu_%s/%s/bit_identical_repeat losses[9]=%.7f vs %.7f\n", same ? "PASS" : "FAIL", PRECISION_NAME,
           name.c_str(), l1.back(), l2.back());
    (same ? n_pass : n_fail)++;
    printf("info %s: loss gpu %.6f ref %.6f | step losses gpu", name.c_str(), loss, tf.f32("loss")[0]);
    for (float v : l1) printf(" %.5f", v);
    printf(" | ref");
    for (float v : ref_losses) printf(" %.5f", v);
    printf("\n");
    gpt_free(&g);
    cudaCheck(cudaStreamDestroy(g.stream));
}

// Dropout: the device mask must be exactly the host hash's, keep ~1-p, kept values scaled by 1/(1-p).
static void check_dropout() {
    const size_t n = 1 << 20;
    const float p = 0.25f;
    const uint64_t seed = 12345;
    std::vector<float> ones(n, 1.0f);
    float* d32;
    floatX* x;
    cudaCheck(cudaMalloc(&d32, n * sizeof(float)));
    cudaCheck(cudaMalloc(&x, n * sizeof(floatX)));
    cudaCheck(cudaMemcpy(d32, ones.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    copy_f32_to_floatX(x, d32, n, 0);
    dropout_apply(x, x, n, p, seed, 0);
    std::vector<floatX> h(n);
    cudaCheck(cudaMemcpy(h.data(), x, n * sizeof(floatX), cudaMemcpyDeviceToHost));
    size_t kept = 0, mismatched = 0;
    const float want = (float)(floatX)(1.0f / (1.0f - p));
    for (size_t i = 0; i < n; i++) {
        const bool keep = dropout_hash(seed, i) >= dropout_threshold(p);
        kept += keep;
        if ((float)h[i] != (keep ? want : 0.0f)) mismatched++;
    }
    const double frac = (double)kept / n;
    const bool ok = mismatched == 0 && fabs(frac - (1 - p)) < 0.005;
    printf("%s gpt_gpu_%s/dropout kept=%.4f (expect %.2f) mismatched=%zu\n", ok ? "PASS" : "FAIL", PRECISION_NAME, frac, 1 - p, mismatched);
    (ok ? n_pass : n_fail)++;
    cudaCheck(cudaFree(d32));
    cudaCheck(cudaFree(x));
}

// Activation recompute (llmc/train/recompute.h): the loss and every gradient bit-identical to
// the run without it, in each mode, over all layers and over the first only, with and without
// residual dropout (the rerun forward must redraw the same masks).
static std::vector<float> grads_with(const GPTConfig& cfg, const Recompute& rc, const std::vector<float>& init, const int* x,
                                     const int* y, const int* pos, int B, int T, float dropout, float* loss,
                                     const CpGroup& cp = CpGroup()) {
    GPT g;
    cudaCheck(cudaStreamCreate(&g.stream));
    gpt_build(&g, cfg, B, T, rc, cp);
    gpt_set_params(&g, init.data());
    g.dropout = dropout;
    g.dropout_seed = 777;
    gpt_zero_grad(&g);
    const int n = counted_targets(y, B * T);
    gpt_forward(&g, x, y, B, T, true, 1.0f / n, pos);
    gpt_backward(&g);
    *loss = (float)(gpt_loss_sum(&g) / n);
    std::vector<float> grads(g.num_params);
    cudaCheck(cudaMemcpy(grads.data(), g.grads, grads.size() * sizeof(float), cudaMemcpyDeviceToHost));
    gpt_free(&g);
    cudaCheck(cudaStreamDestroy(g.stream));
    return grads;
}

static void check_recompute(const std::string& path) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    TensorFile tf = tensorfile_read(path);
    GPTConfig cfg = gpt_config_from_reference(tf);
    const NamedTensor& tokens = tf.get("tokens");
    const int B = tokens.shape[0], T = tokens.shape[1];
    const int* pos = tf.has("positions") ? tf.i32("positions").data() : nullptr;
    const std::vector<ParamTensor> layout = gpt_param_layout(cfg);
    std::vector<float> init(layout_numel(layout));
    for (const ParamTensor& p : layout) std::copy(tf.f32(p.name).begin(), tf.f32(p.name).end(), init.begin() + p.offset);
    for (float dropout : {0.0f, 0.1f}) {
        float loss_none = 0;
        const std::vector<float> none = grads_with(cfg, Recompute(), init, tf.i32("tokens").data(), tf.i32("targets").data(), pos, B, T, dropout, &loss_none);
        for (RecomputeMode mode : {RECOMPUTE_SELECTIVE, RECOMPUTE_FULL}) {
            for (int k : {cfg.n_layer, 1}) {
                Recompute rc;
                rc.mode = mode;
                rc.layers = k;
                float loss = 0;
                const std::vector<float> gr = grads_with(cfg, rc, init, tf.i32("tokens").data(), tf.i32("targets").data(), pos, B, T, dropout, &loss);
                size_t diff = 0;
                for (size_t i = 0; i < gr.size(); i++) diff += memcmp(&gr[i], &none[i], sizeof(float)) != 0;
                const bool ok = diff == 0 && memcmp(&loss, &loss_none, sizeof(float)) == 0;
                printf("%s gpt_gpu_%s/%s/recompute_%s_layers%d_dropout%g bit-identical gradients: %zu of %zu differ, loss %.7f vs %.7f\n",
                       ok ? "PASS" : "FAIL", PRECISION_NAME, name.c_str(), recompute_mode_name(mode), k, dropout, diff, gr.size(), loss, loss_none);
                (ok ? n_pass : n_fail)++;
            }
        }
    }
}

// Context parallel, the whole group simulated in one process (--cp n on one GPU: every rank's
// tokens here, the ring's transfers as device copies): the logits (read back through
// gpt_logits_at, which undoes the chunk order), the loss, every gradient and 10 AdamW steps
// against the PyTorch reference with the plain run's tolerances; the gradients against the plain
// run's (--cp 1) within the bf16 gradient tolerance (the ring adds the blocks' partial dQ/dK/dV,
// each rounded to bf16, in fp32: not the plain run's bits); full recompute under CP bit-identical
// to CP without it; a repeat bit-identical. Packed rows are refused with --cp (gpt_forward).
static void check_cp(const std::string& path) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    TensorFile tf = tensorfile_read(path);
    if (tf.has("positions")) return;
    GPTConfig cfg = gpt_config_from_reference(tf);
    const NamedTensor& tokens = tf.get("tokens");
    const int B = tokens.shape[0], T = tokens.shape[1], V = cfg.vocab_size;
    const int* x = tf.i32("tokens").data();
    const int* y = tf.i32("targets").data();
    const int counted = counted_targets(y, B * T);
    const std::vector<ParamTensor> layout = gpt_param_layout(cfg);
    std::vector<float> init(layout_numel(layout));
    for (const ParamTensor& p : layout) std::copy(tf.f32(p.name).begin(), tf.f32(p.name).end(), init.begin() + p.offset);
    float loss_plain = 0;
    const std::vector<float> plain = grads_with(cfg, Recompute(), init, x, y, nullptr, B, T, 0.0f, &loss_plain);
    for (int n : {2, 3, 4}) {
        if (T % (2 * n)) continue;
        const std::string tag = name + "/cp" + std::to_string(n);
        const CpGroup cp = {n, 0, n};
        GPT g;
        cudaCheck(cudaStreamCreate(&g.stream));
        gpt_build(&g, cfg, B, T, Recompute(), cp);
        gpt_set_params(&g, init.data());
        gpt_forward(&g, x, y, B, T, false, 0.0f);
        const float loss = (float)(gpt_loss_sum(&g) / counted);
        std::vector<float> logits((size_t)B * T * V);
        std::vector<floatX> row(V);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                cudaCheck(cudaMemcpy(row.data(), gpt_logits_at(&g, b, t), V * sizeof(floatX), cudaMemcpyDeviceToHost));
                for (int c = 0; c < V; c++) logits[((size_t)b * T + t) * V + c] = (float)row[c];
            }
        check(tag + "/logits", rel_error(logits.data(), tf.f32("logits").data(), logits.size()), TOL_LOGITS);
        check(tag + "/loss", rel_error(&loss, tf.f32("loss").data(), 1), TOL_LOSS);
        gpt_zero_grad(&g);
        gpt_forward(&g, x, y, B, T, true, 1.0f / counted);
        gpt_backward(&g);
        std::vector<float> grads(g.num_params);
        cudaCheck(cudaMemcpy(grads.data(), g.grads, grads.size() * sizeof(float), cudaMemcpyDeviceToHost));
        for (const ParamTensor& p : g.layout)
            check(tag + "/grad." + p.name, rel_error(grads.data() + p.offset, tf.f32("grad." + p.name).data(), p.numel), TOL_GRAD);
        check(tag + "/grads_vs_cp1", rel_error(grads.data(), plain.data(), grads.size()), TOL_GRAD);
        const std::vector<float>& tr = tf.f32("train");
        OptimConfig oc;
        oc.lr = tr[0]; oc.beta1 = tr[1]; oc.beta2 = tr[2]; oc.eps = tr[3]; oc.weight_decay = tr[4]; oc.grad_clip = tr[5];
        const std::vector<float>& ref_losses = tf.f32("losses");
        const std::vector<float> l1 = train_steps(&g, init, x, y, nullptr, B, T, oc, (int)ref_losses.size());
        check(tag + "/10_step_losses", rel_error(l1.data(), ref_losses.data(), l1.size()), TOL_STEPS);
        gpt_free(&g);
        cudaCheck(cudaStreamDestroy(g.stream));

        float loss_a = 0, loss_b = 0, loss_full = 0;
        const std::vector<float> a = grads_with(cfg, Recompute(), init, x, y, nullptr, B, T, 0.0f, &loss_a, cp);
        const std::vector<float> b2 = grads_with(cfg, Recompute(), init, x, y, nullptr, B, T, 0.0f, &loss_b, cp);
        Recompute full;
        full.mode = RECOMPUTE_FULL;
        full.layers = cfg.n_layer;
        const std::vector<float> f = grads_with(cfg, full, init, x, y, nullptr, B, T, 0.0f, &loss_full, cp);
        size_t diff_repeat = 0, diff_full = 0;
        for (size_t i = 0; i < a.size(); i++) {
            diff_repeat += memcmp(&a[i], &b2[i], sizeof(float)) != 0;
            diff_full += memcmp(&a[i], &f[i], sizeof(float)) != 0;
        }
        const bool ok_repeat = diff_repeat == 0 && memcmp(&loss_a, &loss_b, sizeof(float)) == 0;
        const bool ok_full = diff_full == 0 && memcmp(&loss_a, &loss_full, sizeof(float)) == 0;
        printf("%s gpt_gpu_%s/%s/bit_identical_repeat: %zu of %zu gradients differ\n", ok_repeat ? "PASS" : "FAIL", PRECISION_NAME,
               tag.c_str(), diff_repeat, a.size());
        printf("%s gpt_gpu_%s/%s/recompute_full bit-identical gradients: %zu of %zu differ\n", ok_full ? "PASS" : "FAIL", PRECISION_NAME,
               tag.c_str(), diff_full, a.size());
        (ok_repeat ? n_pass : n_fail)++;
        (ok_full ? n_pass : n_fail)++;
    }
}

int main(int argc, char** argv) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        printf("SKIP gpt_gpu_%s: no CUDA device\n", PRECISION_NAME);
        return 0;
    }
    cudaCheck(cudaSetDevice(0));
    cublas_init();
    // SFT targets (-100 ignored): gpt_sft_rows.mgt one conversation a row (train_gpt --pack 0),
    // gpt_sft.mgt packed rows with their positions (--pack 1)
    std::vector<std::string> files = {"test/data/gpt_tiny.mgt", "test/data/gpt_gqa.mgt", "test/data/gpt_sft_rows.mgt",
                                      "test/data/gpt_sft.mgt"};
    if (argc > 1) files.assign(argv + 1, argv + argc);
    for (const std::string& f : files) run_file(f);
    for (const std::string& f : files) check_recompute(f);
    for (const std::string& f : files) check_cp(f);
    check_dropout();
    cublas_free();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

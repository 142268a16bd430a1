// CPU test of the fp32 reference dev/cpu/gpt.cpp against the PyTorch reference
// tensors in test/data (written by dev/reference/gpt.py in float64, stored as
// float32): logits, loss, every parameter gradient, the grad norm, and the
// losses of 10 clipped AdamW steps on the same batch. Also: padded vocabulary
// rows get zero gradient, and the loss at init is near ln(vocab).
// gpt_sft.mgt is a packed SFT batch (its `positions`: two conversations a row,
// attention inside each, targets -100 off the loss mask and on padding, the loss the
// mean over the targets that count), checked the same way; gpt_sft_rows.mgt the same data
// one conversation a row (train_gpt --pack 0: no positions, plain causal attention).
#define GPT_CPU_NO_MAIN
#include "../dev/cpu/gpt.cpp"
#include "gpt_reference.h"

// Relative error ||cpu - ref|| / ||ref|| allowed per check. The CPU model is
// honest fp32 (unit roundoff 6e-8); against float64 math its errors stay
// around 1e-7..1e-6 through two layers, their backward and 10 Adam steps.
static const double TOL = 1e-5;
// The loss at init of a small-init model is close to uniform over the vocab.
static const double TOL_INIT_LOSS = 0.05;   // relative to ln(vocab)

static int n_pass = 0, n_fail = 0;
static void check(const std::string& name, double err, double tol, const char* what = "rel_err") {
    const bool ok = err <= tol;   // NaN fails
    printf("%s gpt_cpu/%s %s=%.3e tol=%.0e\n", ok ? "PASS" : "FAIL", name.c_str(), what, err, tol);
    (ok ? n_pass : n_fail)++;
}


static void run_file(const std::string& path) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    if (!file_exists(path)) {
        printf("FAIL gpt_cpu/%s: reference file missing (written by dev/reference/gpt.py)\n", name.c_str());
        n_fail++;
        return;
    }
    TensorFile tf = tensorfile_read(path);
    GPTConfig cfg = gpt_config_from_reference(tf);
    const NamedTensor& tokens = tf.get("tokens");
    if (tokens.shape.size() != 2) fail("%s: tokens must be [B,T]", path.c_str());
    const int B = tokens.shape[0], T = tokens.shape[1], BT = B * T, V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
    const int* x = tf.i32("tokens").data();
    const int* y = tf.i32("targets").data();
    if (tf.i32("targets").size() != (size_t)BT) fail("%s: targets must be [B,T] like tokens", path.c_str());
    const int* pos = nullptr;   // packed rows: positions restart at each document
    if (tf.has("positions")) {
        if (tf.i32("positions").size() != (size_t)BT) fail("%s: positions must be [B,T] like tokens", path.c_str());
        pos = tf.i32("positions").data();
        int ignored = 0, starts = 0;
        for (int i = 0; i < BT; i++) { ignored += y[i] == GPT_IGNORE_INDEX; starts += pos[i] == 0; }
        printf("%s gpt_cpu/%s/packed_batch: %d of %d targets ignored, %d segments\n", ignored > 0 && starts > B ? "PASS" : "FAIL",
               name.c_str(), ignored, BT, starts);
        (ignored > 0 && starts > B ? n_pass : n_fail)++;
    }

    GPTCpu g;
    gpt_cpu_build(&g, cfg, B, T);
    for (const ParamTensor& p : g.layout) {
        const std::vector<float>& v = tf.f32(p.name);
        if (v.size() != p.numel) fail("%s: tensor %s has %zu values (expected %zu)", path.c_str(), p.name.c_str(), v.size(), p.numel);
        std::copy(v.begin(), v.end(), g.params.begin() + p.offset);
    }
    const std::vector<float> init = g.params;

    // forward: logits (the first V columns) and loss
    const float loss = gpt_cpu_forward(&g, x, y, pos);
    std::vector<float> logits((size_t)BT * V);
    for (int r = 0; r < BT; r++)
        for (int c = 0; c < V; c++) logits[(size_t)r * V + c] = g.logits[(size_t)r * Vp + c];
    const std::vector<float>& ref_logits = tf.f32("logits");
    if (ref_logits.size() != logits.size()) fail("%s: logits has %zu values (expected %zu)", path.c_str(), ref_logits.size(), logits.size());
    check(name + "/logits", rel_error(logits.data(), ref_logits.data(), logits.size()), TOL);
    check(name + "/loss", rel_error(&loss, tf.f32("loss").data(), 1), TOL);
    // the init here is the reference's (not ours), still small: loss ~ ln(V)
    check(name + "/init_loss_near_ln_vocab", fabs(loss - log((double)V)) / log((double)V), TOL_INIT_LOSS);

    // backward: every gradient, the grad norm
    gpt_cpu_zero_grad(&g);
    gpt_cpu_backward(&g);
    for (const ParamTensor& p : g.layout) {
        const std::vector<float>& ref = tf.f32("grad." + p.name);
        if (ref.size() != p.numel) fail("%s: grad.%s has %zu values (expected %zu)", path.c_str(), p.name.c_str(), ref.size(), p.numel);
        check(name + "/grad." + p.name, rel_error(g.grads.data() + p.offset, ref.data(), p.numel), TOL);
    }
    const float norm = gpt_cpu_grad_norm(&g);
    check(name + "/grad_norm", rel_error(&norm, tf.f32("grad_norm").data(), 1), TOL);
    {
        // padded vocabulary rows of wte (and lm_head) never receive gradient: exact zero
        double pad = 0;
        for (const char* n : {"wte", "lm_head"}) {
            const ParamTensor* p = gpt_find_param(g.layout, n);
            if (!p) continue;
            for (size_t k = (size_t)V * cfg.d_model; k < p->numel; k++) pad += fabs(g.grads[p->offset + k]);
        }
        check(name + "/padded_rows_zero_grad", pad, 0.0, "abs_sum");
    }

    // 10 clipped AdamW steps on the same batch; loss measured before each update
    const std::vector<float>& tr = tf.f32("train");
    if (tr.size() != 6) fail("%s: train has %zu values (expected 6)", path.c_str(), tr.size());
    const std::vector<float>& ref_losses = tf.f32("losses");
    g.params = init;
    std::fill(g.m.begin(), g.m.end(), 0.0f);
    std::fill(g.v.begin(), g.v.end(), 0.0f);
    std::vector<float> losses;
    for (size_t s = 0; s < ref_losses.size(); s++) {
        losses.push_back(gpt_cpu_forward(&g, x, y, pos));
        gpt_cpu_zero_grad(&g);
        gpt_cpu_backward(&g);
        gpt_cpu_update(&g, tr[0], tr[1], tr[2], tr[3], tr[4], tr[5], (int)s + 1);
    }
    for (size_t s = 0; s < losses.size(); s++)
        check(name + "/step" + std::to_string(s) + "_loss", rel_error(&losses[s], &ref_losses[s], 1), TOL);
    printf("info %s: B=%d T=%d loss cpu %.6f ref %.6f ln(V) %.6f | step losses cpu", name.c_str(), B, T, loss,
           tf.f32("loss")[0], log((double)V));
    for (float v : losses) printf(" %.5f", v);
    printf(" | ref");
    for (float v : ref_losses) printf(" %.5f", v);
    printf("\n");
}

int main(int argc, char** argv) {
    std::vector<std::string> files = {"test/data/gpt_tiny.mgt", "test/data/gpt_gqa.mgt", "test/data/gpt_sft.mgt", "test/data/gpt_sft_rows.mgt"};
    if (argc > 1) files.assign(argv + 1, argv + argc);
    double t0 = wall_seconds();
    for (const std::string& f : files) run_file(f);
    printf("%d passed, %d failed (%.1f s)\n", n_pass, n_fail, wall_seconds() - t0);
    return n_fail ? 1 : 0;
}

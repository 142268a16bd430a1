// CPU test of the fp32 reference dev/cpu/dit.cpp against the PyTorch reference
// tensors in test/data (written by dev/reference/dit.py in float64, stored as
// float32): the network's output (full output), the loss, every parameter
// gradient, the grad norm, and the losses of 10 clipped AdamW steps on the same
// batch, for rectified flow (dit_tiny.mgt) and EDM (dit_tiny_edm.mgt, which
// also holds the first steps of the Heun sampler with guidance, checked here).
// Also: output channels >= in_channels get exactly zero gradient, and a sample
// run alone gives what it gives inside the packed batch.
#define DIT_CPU_NO_MAIN
#include "../dev/cpu/dit.cpp"

// Relative error ||cpu - ref|| / ||ref|| allowed per check. The CPU model is
// honest fp32 (unit roundoff 6e-8); against float64 math its errors stay
// around 1e-7..1e-6 through two blocks, their backward and 10 Adam steps.
static const double TOL = 1e-5;

static int n_pass = 0, n_fail = 0;
static void check(const std::string& name, double err, double tol, const char* what = "rel_err") {
    const bool ok = err <= tol;   // NaN fails
    printf("%s dit_cpu/%s %s=%.3e tol=%.0e\n", ok ? "PASS" : "FAIL", name.c_str(), what, err, tol);
    (ok ? n_pass : n_fail)++;
}

static void run_file(const std::string& path) {
    const std::string name = path.substr(path.find_last_of('/') + 1);
    if (!file_exists(path)) {
        printf("FAIL dit_cpu/%s: reference file missing (written by dev/reference/dit.py)\n", name.c_str());
        n_fail++;
        return;
    }
    TensorFile tf = tensorfile_read(path);
    DiTConfig cfg = dit_config_from_reference(tf);
    DiTBatch bt = dit_batch_from_reference(tf, cfg);

    DiTCpu g;
    dit_cpu_build(&g, cfg);
    g.obj = dit_objective_from_reference(tf);
    dit_params_from_reference(&g, tf);
    const std::vector<float> init = g.params;

    // forward: v_pred (every output channel, cropped) and the loss
    const float loss = dit_cpu_forward(&g, bt);
    const std::vector<float>& ref_v = tf.f32("v_pred");
    if (ref_v.size() != g.v_pred.size()) fail("%s: v_pred has %zu values (expected %zu)", path.c_str(), ref_v.size(), g.v_pred.size());
    check(name + "/v_pred", rel_error(g.v_pred.data(), ref_v.data(), ref_v.size()), TOL);
    check(name + "/loss", rel_error(&loss, tf.f32("loss").data(), 1), TOL);

    // backward: every gradient, the grad norm
    dit_cpu_zero_grad(&g);
    dit_cpu_backward(&g);
    for (const ParamTensor& p : g.layout) {
        const std::vector<float>& ref = tf.f32("grad." + p.name);
        if (ref.size() != p.numel) fail("%s: grad.%s has %zu values (expected %zu)", path.c_str(), p.name.c_str(), ref.size(), p.numel);
        check(name + "/grad." + p.name, rel_error(g.grads.data() + p.offset, ref.data(), p.numel), TOL);
    }
    const float norm = dit_cpu_grad_norm(&g);
    check(name + "/grad_norm", rel_error(&norm, tf.f32("grad_norm").data(), 1), TOL);
    {
        // the loss reads output channels < in_channels only: the others' final-linear rows get exact zeros
        const ParamTensor* w = dit_find_param(g.layout, "final_layer.linear.weight");
        const ParamTensor* b = dit_find_param(g.layout, "final_layer.linear.bias");
        double s = 0;
        for (int r = 0; r < w->shape[0]; r++) {
            if (r % cfg.out_channels < cfg.in_channels) continue;
            s += fabs(g.grads[b->offset + r]);
            for (int k = 0; k < cfg.d_model; k++) s += fabs(g.grads[w->offset + (size_t)r * cfg.d_model + k]);
        }
        check(name + "/extra_out_channels_zero_grad", s, 0.0, "abs_sum");
    }
    {
        // the trainer's RoPE table (dit_rope_table_at, per axis and position) is the reference's
        // per-entry evaluation, bit for bit: for the batch, for a rank's part of it (every third
        // token) and for a batch of larger grids (positions up to 40 on each axis)
        auto table_diff = [&](const DiTCpu& m, int stride) {
            std::vector<int> sample, pos;
            for (int b = 0; b < m.B; b++)
                for (int j = b % stride; j < m.grids[b].L; j += stride) { sample.push_back(b); pos.push_back(j); }
            const int half = cfg.head_dim / 2;
            std::vector<float> t(pos.size() * half * 2);
            dit_rope_table_at(t.data(), cfg, m.grids, sample, pos);
            double d = 0;
            for (size_t i = 0; i < pos.size(); i++)
                for (int k = 0; k < half; k++) {
                    const size_t r = ((size_t)m.cu_x[sample[i]] + pos[i]) * half + k;
                    d += fabs((double)t[(i * half + k) * 2] - m.rope_cos[r]) + fabs((double)t[(i * half + k) * 2 + 1] - m.rope_sin[r]);
                }
            return d;
        };
        check(name + "/rope_table_as_reference", table_diff(g, 1), 0.0, "abs_sum");
        check(name + "/rope_table_part_as_reference", table_diff(g, 3), 0.0, "abs_sum");
        DiTBatch big;
        big.B = 2;
        big.T = {40, 3}; big.H = {8, 80}; big.W = {6, 82}; big.text_len = {1, 2};
        big.has_mask = {0, 0}; big.t = {0.5f, 0.5f}; big.fps = {24.0f, 24.0f};
        big.frame_mask.assign(43, 1);
        big.x0.assign((size_t)cfg.in_channels * (40 * 8 * 6 + 3 * 80 * 82), 0.0f);
        big.eps = big.x0;
        big.text.assign((size_t)3 * cfg.caption_channels, 0.0f);
        DiTCpu gb;
        dit_cpu_build(&gb, cfg);
        gb.obj = g.obj;
        dit_cpu_setup(&gb, big);
        check(name + "/rope_table_large_grids_as_reference", table_diff(gb, 1), 0.0, "abs_sum");
    }
    {
        // packing: the last sample alone gives the same output as inside the batch
        const int b = bt.B - 1;
        const std::vector<float> v_all(g.v_pred.begin() + g.cu_out[b], g.v_pred.begin() + g.cu_out[b + 1]);
        DiTBatch one;
        one.B = 1;
        one.T = {bt.T[b]}; one.H = {bt.H[b]}; one.W = {bt.W[b]}; one.text_len = {bt.text_len[b]};
        one.has_mask = {bt.has_mask[b]}; one.t = {bt.t[b]}; one.fps = {bt.fps[b]};
        one.x0.assign(bt.x0.begin() + g.cu_lat[b], bt.x0.begin() + g.cu_lat[b + 1]);
        one.eps.assign(bt.eps.begin() + g.cu_lat[b], bt.eps.begin() + g.cu_lat[b + 1]);
        one.text.assign(bt.text.begin() + (size_t)g.cu_t[b] * cfg.caption_channels,
                        bt.text.begin() + (size_t)g.cu_t[b + 1] * cfg.caption_channels);
        one.frame_mask.assign(bt.frame_mask.begin() + g.cu_f[b], bt.frame_mask.begin() + g.cu_f[b + 1]);
        DiTCpu g1;
        dit_cpu_build(&g1, cfg);
        g1.obj = g.obj;
        g1.params = g.params;
        dit_cpu_forward(&g1, one);
        check(name + "/packing_sample_alone", rel_error(g1.v_pred.data(), v_all.data(), v_all.size()), 1e-6);
    }

    if (g.obj.kind == DIT_OBJECTIVE_EDM) {
        // the sampler's first steps from the reference parameters: the batch's samples as prompts
        // (a masked sample is image-to-video with its frame 0), the file's noise and null caption
        const std::vector<float>& sp = tf.f32("sampler");
        if (sp.size() != 3) fail("%s: sampler has %zu values (expected 3: steps, kept steps, guidance)", path.c_str(), sp.size());
        std::vector<DiTCpuPrompt> prompts(bt.B);
        for (int b = 0; b < bt.B; b++) {
            DiTCpuPrompt& q = prompts[b];
            q.T = bt.T[b]; q.H = bt.H[b]; q.W = bt.W[b]; q.fps = bt.fps[b];
            q.text.assign(bt.text.begin() + (size_t)g.cu_t[b] * cfg.caption_channels, bt.text.begin() + (size_t)g.cu_t[b + 1] * cfg.caption_channels);
            if (bt.has_mask[b]) {
                const size_t plane = (size_t)q.H * q.W;
                for (int ch = 0; ch < cfg.in_channels; ch++) {
                    const float* f0 = bt.x0.data() + g.cu_lat[b] + (size_t)ch * q.T * plane;
                    q.first_frame.insert(q.first_frame.end(), f0, f0 + plane);
                }
            }
        }
        const std::vector<std::vector<float>> traj = dit_cpu_edm_sample(&g, prompts, tf.f32("sample_noise"), tf.f32("null_text"),
                                                                        (int)sp[0], sp[2], (int)sp[1]);
        const std::vector<float>& ref_z = tf.f32("sample_z");
        if (ref_z.size() != traj.size() * bt.x0.size()) fail("%s: sample_z has %zu values (expected %zu)", path.c_str(), ref_z.size(), traj.size() * bt.x0.size());
        for (size_t i = 0; i < traj.size(); i++)
            check(name + "/sampler_step" + std::to_string(i), rel_error(traj[i].data(), ref_z.data() + i * bt.x0.size(), bt.x0.size()), TOL);
        g.params = init;
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
        losses.push_back(dit_cpu_forward(&g, bt));
        dit_cpu_zero_grad(&g);
        dit_cpu_backward(&g);
        dit_cpu_update(&g, tr[0], tr[1], tr[2], tr[3], tr[4], tr[5], (int)s + 1);
    }
    for (size_t s = 0; s < losses.size(); s++)
        check(name + "/step" + std::to_string(s) + "_loss", rel_error(&losses[s], &ref_losses[s], 1), TOL);
    printf("info %s: B=%d tokens %d text %d loss cpu %.6f ref %.6f | step losses cpu", name.c_str(), bt.B, g.N, g.Nt,
           loss, tf.f32("loss")[0]);
    for (float v : losses) printf(" %.5f", v);
    printf(" | ref");
    for (float v : ref_losses) printf(" %.5f", v);
    printf("\n");
}

int main(int argc, char** argv) {
    std::vector<std::string> files = {"test/data/dit_tiny.mgt", "test/data/dit_tiny_edm.mgt"};
    if (argc > 1) files.assign(argv + 1, argv + argc);
    double t0 = wall_seconds();
    for (const std::string& f : files) run_file(f);
    printf("%d passed, %d failed (%.1f s)\n", n_pass, n_fail, wall_seconds() - t0);
    return n_fail ? 1 : 0;
}

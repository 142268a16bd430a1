// The C++ half of test/test_convert_mugv.sh (scripts/convert_mugv.py): reads
// the model.bin that the converter made from a MUG-V-named state dict through
// llmc/train/checkpoint.h's readers (header checksum, config fields, payload
// checksum), runs the fp32 CPU reference dev/cpu/dit.cpp on the inputs of a
// tensor file written by the test's Python step, and compares v_pred and the
// loss with dev/reference/dit.py's (float64) evaluation of the same state dict.
// With a .safetensors (convert_mugv.py to-safetensors) it also checks, through
// llmc/formats/safetensors.h, that every tensor is there under its MUG-V name and
// shape, holding exactly the model.bin's values.
//
//   ./test/test_convert_mugv MODEL.bin REF.mgt [MUGV.safetensors]
//   ./test/test_convert_mugv --xxh64 FILE N...   prints the XXH64 of the first N bytes (one line per N)
#define DIT_CPU_NO_MAIN
#include "../dev/cpu/dit.cpp"
#include "../llmc/train/checkpoint_dit.h"
#include "../llmc/formats/safetensors.h"

// ||cpu - ref|| / ||ref||: the CPU model is fp32, the reference float64 (as in test_dit_cpu)
static const double TOL = 1e-5;

static int n_pass = 0, n_fail = 0;
static void check(bool ok, const std::string& name, const std::string& detail) {
    printf("%s convert_mugv/%s: %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
    (ok ? n_pass : n_fail)++;
}
static std::string fmt(const char* f, double x) {
    char b[64];
    snprintf(b, sizeof b, f, x);
    return b;
}

static std::string config_str(const DiTConfig& c) {
    char b[256];
    snprintf(b, sizeof b, "C %d, %d layers, %d heads x %d, F %d, Cin %d, Cout %d, Cy %d, patch %dx%dx%d, rope_max_t %d",
             c.d_model, c.n_layer, c.n_head, c.head_dim, c.ffn_hidden, c.in_channels, c.out_channels, c.caption_channels,
             c.patch_t, c.patch_h, c.patch_w, c.rope_max_t);
    return b;
}

static int xxh64_mode(int argc, char** argv) {
    FILE* f = fopen_or_fail(argv[2], "rb");
    const long size = file_size_or_fail(f, argv[2]);
    std::vector<uint8_t> data((size_t)size);
    if (size) fread_exact(data.data(), (size_t)size, f, argv[2], "data");
    fclose(f);
    for (int i = 3; i < argc; i++) {
        const long n = atol(argv[i]);
        if (n < 0 || n > size) fail("--xxh64: length %ld outside [0, %ld]", n, size);
        printf("%ld %016llx\n", n, (unsigned long long)xxh64(data.data(), (size_t)n));
    }
    return 0;
}

int main(int argc, char** argv) {
    if (argc >= 3 && std::string(argv[1]) == "--xxh64") return xxh64_mode(argc, argv);
    if (argc != 3 && argc != 4) fail("usage: %s MODEL.bin REF.mgt [MUGV.safetensors] | --xxh64 FILE N...", argv[0]);
    const std::string model = argv[1], ref = argv[2];

    // model.bin through the readers train_dit uses for --init-from
    const CkptModelHeader mh = ckpt_read_model_header_or_fail(model);
    const DiTConfig stored = dit_config_from_ckpt(mh);
    DiTConfig cfg = stored;
    dit_config_finalize(&cfg);
    const CkptModelInfo info = dit_ckpt_info(cfg);
    ckpt_check_model_or_fail(mh, info);   // every field, n_tensors, n_params

    // the inferred config is the one dev/reference/dit.py evaluated
    TensorFile tf = tensorfile_read(ref);
    const DiTConfig rc = dit_config_from_reference(tf);
    const CkptModelInfo rinfo = dit_ckpt_info(rc);
    std::string diff;
    for (size_t i = 0; i < info.config.size(); i++)
        if (info.config[i].bits != rinfo.config[i].bits && diff.empty())
            diff = std::string(info.config[i].name) + " differs (model.bin " + std::to_string(info.config[i].bits) + ", reference " +
                   std::to_string(rinfo.config[i].bits) + " as bits)";
    check(diff.empty(), "config", diff.empty() ? "the 19 model.bin fields equal dit.py's config (" + config_str(cfg) + ")" : diff);

    DiTCpu g;
    dit_cpu_build(&g, cfg);
    ckpt_read_model_params_or_fail(mh, ckpt_sink_to(g.params.data()));   // checks the payload checksum
    check(true, "model_bin_read", std::to_string(g.num_params) + " params, " + (mh.dtype == CKPT_BF16 ? "bf16" : "fp32") +
                                      ", header and payload XXH64 verified by llmc/train/checkpoint.h");

    // forward on the reference inputs
    const DiTBatch bt = dit_batch_from_reference(tf, cfg);
    const float loss = dit_cpu_forward(&g, bt);
    const std::vector<float>& ref_v = tf.f32("v_pred");
    if (ref_v.size() != g.v_pred.size()) fail("%s: v_pred has %zu values (expected %zu)", ref.c_str(), ref_v.size(), g.v_pred.size());
    const double ev = rel_error(g.v_pred.data(), ref_v.data(), ref_v.size());
    double maxabs = 0, maxref = 0;
    for (size_t k = 0; k < ref_v.size(); k++) {
        maxabs = std::max(maxabs, fabs((double)g.v_pred[k] - ref_v[k]));
        maxref = std::max(maxref, fabs((double)ref_v[k]));
    }
    const float ref_loss = tf.f32("loss").at(0);
    const double el = rel_error(&loss, &ref_loss, 1);
    check(ev <= TOL, "v_pred", "dev/cpu/dit.cpp on model.bin vs dit.py on the MUG-V state dict: rel_err " + fmt("%.3e", ev) +
                                   ", max |diff| / max |ref| " + fmt("%.3e", maxabs / maxref) + " over " +
                                   std::to_string(ref_v.size()) + " values, tol " + fmt("%.0e", TOL));
    check(el <= TOL, "loss", "cpu " + fmt("%.7f", loss) + " ref " + fmt("%.7f", ref_loss) + " rel_err " + fmt("%.3e", el));

    if (argc == 4) {
        // the safetensors: MUG-V names and shapes, the model.bin's values bit for bit
        const std::string stp = argv[3];
        SafeTensors st;
        safetensors_open(&st, stp);
        size_t expected = 0;
        std::string bad;
        std::vector<float> buf;
        for (const ParamTensor& p : g.layout) {
            const bool stacked = p.name.compare(0, 7, "blocks.") == 0;
            const int reps = stacked ? cfg.n_layer : 1;
            std::vector<int64_t> shape(p.shape.begin() + (stacked ? 1 : 0), p.shape.end());
            if (p.name == "x_embedder.proj.weight") shape = {cfg.d_model, cfg.in_channels, cfg.patch_t, cfg.patch_h, cfg.patch_w};
            const size_t per = p.numel / (size_t)reps;
            for (int l = 0; l < reps && bad.empty(); l++) {
                const std::string name = stacked ? "blocks." + std::to_string(l) + "." + p.name.substr(7) : p.name;
                expected++;
                const SafeTensorInfo* t = safetensors_find(&st, name);
                if (!t) { bad = "no tensor " + name; break; }
                if (t->shape != shape) { bad = name + " has shape " + st_shape_str(t->shape) + ", expected " + st_shape_str(shape); break; }
                buf.resize(per);
                safetensors_read_into(&st, *t, buf.data());
                if (memcmp(buf.data(), g.params.data() + p.offset + (size_t)l * per, per * sizeof(float)) != 0)
                    bad = name + " holds other values than model.bin's " + p.name + (stacked ? " layer " + std::to_string(l) : "");
            }
        }
        if (bad.empty() && st.tensors.size() != expected)
            bad = std::to_string(st.tensors.size()) + " tensors, expected " + std::to_string(expected);
        if (bad.empty() && !st.metadata.count("config")) bad = "no 'config' in the metadata";
        check(bad.empty(), "safetensors_mugv_names",
              bad.empty() ? std::to_string(expected) + " tensors read by llmc/formats/safetensors.h under MUG-V's names and shapes, "
                                                       "values bit-identical to model.bin, config in the metadata"
                          : stp + ": " + bad);
        safetensors_close(&st);
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

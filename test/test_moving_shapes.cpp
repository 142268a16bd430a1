/*
Tests of llmc/data/moving_shapes.h and the moving_shapes CLI: generator determinism
and coverage, clip geometry, captions <-> attributes <-> text features, the
classifier on clean and noisy clips, and a small dataset written and read back
through the latent loader. Output under test/tmp/moving_shapes/.

  make test/test_moving_shapes moving_shapes && ./test/test_moving_shapes
  ./test/test_moving_shapes --config FRAMES SIZE   (child mode: moving_shapes_check_config)
*/
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/core/rand.h"
#include "../llmc/data/latent_data.h"
#include "../llmc/data/moving_shapes.h"

static const std::string DIR = "test/tmp/moving_shapes";
static std::string str(long long x) { return std::to_string(x); }
static std::string fmt(const char* f, double x) { char b[64]; snprintf(b, sizeof b, f, x); return b; }

static std::vector<float> render(const MovingShapesConfig& cfg, int split, int64_t i, MovingShapesClip* out = nullptr) {
    MovingShapesClip c = moving_shapes_sample(cfg, split, i);
    std::vector<float> v((size_t)3 * cfg.frames * cfg.size * cfg.size);
    moving_shapes_render(cfg, c, v.data());
    if (out) *out = c;
    return v;
}

// Classifier accuracy per attribute over n clips with Gaussian noise sigma.
struct Acc { int shape = 0, color = 0, direction = 0, speed = 0, n = 0; };
static Acc classify_accuracy(const MovingShapesConfig& cfg, int n, float sigma, uint64_t noise_seed) {
    Acc a;
    Rng r;
    rng_seed(&r, noise_seed);
    for (int i = 0; i < n; i++) {
        MovingShapesClip c;
        std::vector<float> v = render(cfg, 1, i, &c);
        if (sigma > 0) for (float& x : v) x += sigma * rng_normal(&r);
        MovingShapesGuess g = moving_shapes_classify(v.data(), cfg.frames, cfg.size, cfg.size);
        a.shape += g.a.shape == c.a.shape;
        a.color += g.a.color == c.a.color;
        a.direction += g.a.direction == c.a.direction;
        a.speed += g.a.speed == c.a.speed;
        a.n++;
    }
    return a;
}
static std::string acc_str(const Acc& a) {
    return "shape " + fmt("%.1f%%", 100.0 * a.shape / a.n) + ", color " + fmt("%.1f%%", 100.0 * a.color / a.n) + ", direction " +
           fmt("%.1f%%", 100.0 * a.direction / a.n) + ", speed " + fmt("%.1f%%", 100.0 * a.speed / a.n) + " of " + str(a.n);
}
static bool acc_at_least(const Acc& a, double f) {
    return a.shape >= f * a.n && a.color >= f * a.n && a.direction >= f * a.n && a.speed >= f * a.n;
}

int main(int argc, char** argv) {
    child_err_path = DIR + "/child.err";
    if (argc == 4 && std::string(argv[1]) == "--config") {
        MovingShapesConfig cfg;
        cfg.frames = (int)parse_int_or_fail(argv[2], "frames");
        cfg.size = (int)parse_int_or_fail(argv[3], "size");
        moving_shapes_check_config(cfg);
        return 0;
    }
    if (argc != 1) fail("usage: %s [--config FRAMES SIZE]", argv[0]);
    make_parent_dirs(DIR + "/x");
    MovingShapesConfig cfg;  // 8 frames, 32x32, 64 caption channels, seed 1337
    const int T = cfg.frames, S = cfg.size, D = cfg.caption_channels;
    const size_t plane = (size_t)S * S;

    // ---- determinism
    {
        std::vector<float> a = render(cfg, 0, 17), b = render(cfg, 0, 17), v = render(cfg, 1, 17);
        MovingShapesConfig other = cfg;
        other.seed = 1338;
        std::vector<float> o = render(other, 0, 17);
        check(a == b, "generator_deterministic", "clip (seed 1337, train, 17) is the same bits twice");
        check(a != v && a != o, "generator_seed_and_split_matter", "val clip 17 and seed-1338 clip 17 differ from it");
    }

    // ---- attribute coverage and clip geometry over many clips
    {
        const int n = 3000;
        std::map<std::string, int> count;
        std::set<std::string> combos;
        bool in_range = true, border_clear = true, moves_right_way = true, lens_ok = true;
        int no_speed = 0, no_article = 0;
        for (int i = 0; i < n; i++) {
            MovingShapesClip c;
            std::vector<float> v = render(cfg, 0, i, &c);
            count[MS_SHAPE_NAMES[c.a.shape]]++; count[MS_COLOR_NAMES[c.a.color]]++;
            count[MS_DIRECTION_NAMES[c.a.direction]]++; count[MS_SPEED_NAMES[c.a.speed]]++;
            combos.insert(str(c.a.shape) + str(c.a.color) + str(c.a.direction) + str(c.a.speed));
            no_speed += c.words.back() != MS_SPEED_NAMES[c.a.speed];
            no_article += c.words[0] != "a";
            if (c.words.size() < 4 || c.words.size() > 6) lens_ok = false;
            for (float x : v) if (x < -1.0f || x > 1.0f) in_range = false;
            // the object never touches the frame's border pixels
            for (int ch = 0; ch < 3; ch++)
                for (int t = 0; t < T; t++)
                    for (int k = 0; k < S; k++) {
                        const float* p = &v[((size_t)ch * T + t) * plane];
                        if (p[k] != -1.0f || p[(size_t)(S - 1) * S + k] != -1.0f || p[(size_t)k * S] != -1.0f || p[(size_t)k * S + S - 1] != -1.0f)
                            border_clear = false;
                    }
            // the brightness-weighted centroid moves in the caption's direction
            double cx[2] = {0, 0}, cy[2] = {0, 0}, w[2] = {0, 0};
            for (int e = 0; e < 2; e++) {
                const int t = e ? T - 1 : 0;
                for (size_t k = 0; k < plane; k++) {
                    float m = 0;
                    for (int ch = 0; ch < 3; ch++) m = std::max(m, v[((size_t)ch * T + t) * plane + k] + 1.0f);
                    cx[e] += m * (double)(k % S); cy[e] += m * (double)(k / S); w[e] += m;
                }
                cx[e] /= w[e]; cy[e] /= w[e];
            }
            const double dx = cx[1] - cx[0], dy = cy[1] - cy[0], want = moving_shapes_speed_px(S, T, c.a.speed) * (T - 1);
            const double along = c.a.direction == MS_LEFT ? -dx : c.a.direction == MS_RIGHT ? dx : c.a.direction == MS_UP ? -dy : dy;
            const double across = c.a.direction <= MS_RIGHT ? dy : dx;
            if (std::fabs(along - want) > 0.05 || std::fabs(across) > 0.05) moves_right_way = false;
        }
        bool all_seen = (int)count.size() == MS_NUM_SHAPES + MS_NUM_COLORS + MS_NUM_DIRECTIONS + MS_NUM_SPEEDS;
        int min_count = n;
        for (auto& kv : count) min_count = std::min(min_count, kv.second);
        check(all_seen && min_count > n / MS_NUM_COLORS / 2, "generator_covers_attributes",
              str(count.size()) + " attribute values seen, rarest " + str(min_count) + " times in " + str(n) + " clips; " + str(combos.size()) + " of 168 combinations");
        check(in_range, "generator_range", "every value in [-1, 1]");
        check(border_clear, "generator_object_inside", "border pixels are background in every frame of every clip");
        check(moves_right_way, "generator_motion", "centroid moves speed*(T-1) px along the caption's direction, 0 across");
        check(lens_ok && no_speed > n / 8 && no_speed < n * 3 / 8 && no_article > n / 10 && no_article < n * 3 / 10, "captions_variable_length",
              "4..6 words; speed word dropped in " + str(no_speed) + ", article in " + str(no_article) + " of " + str(n));
    }
    check_fails_one_line("bad_config_one_frame", {"--config", "1", "32"}, "frames");
    check_fails_one_line("bad_config_small_size", {"--config", "8", "8"}, "size");
    {
        Child c = run_child({"--config", "64", "32"});
        check(c.exited && c.code == 0, "config_64_frames_size_32", "long clips fit: the speeds shrink so a fast object crosses at most half the frame");
    }

    // ---- captions <-> attributes, word vectors
    {
        bool round_trip = true;
        int combos = 0;
        for (int s = 0; s < MS_NUM_SHAPES; s++)
            for (int c = 0; c < MS_NUM_COLORS; c++)
                for (int d = 0; d < MS_NUM_DIRECTIONS; d++)
                    for (int v = 0; v < MS_NUM_SPEEDS; v++)
                        for (int art = 0; art < 2; art++)
                            for (int sp = 0; sp < 2; sp++) {
                                MovingShapesAttrs a;
                                a.shape = s; a.color = c; a.direction = d; a.speed = v;
                                MovingShapesAttrs b;
                                const std::string cap = moving_shapes_join(moving_shapes_caption_words(a, art, sp));
                                if (!moving_shapes_parse_caption(cap, &b) || b.shape != s || b.color != c || b.direction != d || b.speed != (sp ? v : -1))
                                    round_trip = false;
                                combos++;
                            }
        check(round_trip, "caption_round_trip", str(combos) + " (attributes, article, speed word) -> caption -> attributes");
        MovingShapesAttrs x;
        const bool rejects = !moving_shapes_parse_caption("a purple circle moving left", &x) && !moving_shapes_parse_caption("a red moving left", &x) &&
                             !moving_shapes_parse_caption("a red blue circle moving left", &x) && moving_shapes_parse_caption("  red   circle moving up ", &x);
        check(rejects, "caption_parse_rejects", "unknown word, missing shape, two colors rejected; extra spaces accepted");
        check(moving_shapes_join(moving_shapes_caption_words({MS_CIRCLE, MS_RED, MS_LEFT, MS_FAST}, true, true)) == "a red circle moving left fast",
              "caption_text", "\"a red circle moving left fast\"");

        // features: the same word gives the same unit vector wherever it appears; words are near-orthogonal
        MovingShapesClip c0 = moving_shapes_sample(cfg, 0, 0);
        std::vector<float> f0 = moving_shapes_text_features(c0.words, D);
        bool consistent = (int)f0.size() == (int)c0.words.size() * D, unit = true;
        for (int i = 1; i < 200 && consistent; i++) {
            MovingShapesClip c = moving_shapes_sample(cfg, 0, i);
            std::vector<float> f = moving_shapes_text_features(c.words, D);
            for (size_t w = 0; w < c.words.size(); w++) {
                std::vector<float> one(D);
                moving_shapes_word_vector(c.words[w], D, one.data());
                if (memcmp(one.data(), &f[w * D], D * sizeof(float)) != 0) consistent = false;
                double ss = 0;
                for (int k = 0; k < D; k++) ss += (double)one[k] * one[k];
                if (std::fabs(ss - 1.0) > 1e-5) unit = false;
            }
        }
        check(consistent && unit, "word_vectors_consistent", "each word's features are its fixed unit vector in every caption");
        std::vector<std::string> vocab = {"a", "moving", MS_NULL_WORD};
        for (auto n : MS_SHAPE_NAMES) vocab.push_back(n);
        for (auto n : MS_COLOR_NAMES) vocab.push_back(n);
        for (auto n : MS_DIRECTION_NAMES) vocab.push_back(n);
        for (auto n : MS_SPEED_NAMES) vocab.push_back(n);
        std::vector<float> fv = moving_shapes_text_features(vocab, D);
        double max_cos = 0;
        for (size_t i = 0; i < vocab.size(); i++)
            for (size_t j = i + 1; j < vocab.size(); j++) {
                double d = 0;
                for (int k = 0; k < D; k++) d += (double)fv[i * D + k] * fv[j * D + k];
                max_cos = std::max(max_cos, std::fabs(d));
            }
        check(max_cos < 0.6, "word_vectors_distinct", str(vocab.size()) + " vocabulary words, max |cos| " + fmt("%.3f", max_cos));
        std::vector<float> nul = moving_shapes_null_features(D), nul2(D);
        moving_shapes_word_vector("<null>", D, nul2.data());
        check(nul.size() == (size_t)D && nul == nul2, "null_caption", "one token, the vector of \"<null>\"");
    }

    // ---- classifier
    {
        Acc clean = classify_accuracy(cfg, 1000, 0.0f, 1);
        check(clean.shape == clean.n && clean.color == clean.n && clean.direction == clean.n && clean.speed == clean.n, "classify_clean", acc_str(clean));
        Acc n2 = classify_accuracy(cfg, 1000, 0.2f, 2);
        check(acc_at_least(n2, 0.99), "classify_noise_0.2", acc_str(n2) + " (need >= 99%)");
        Acc n4 = classify_accuracy(cfg, 1000, 0.4f, 3);
        check(acc_at_least(n4, 0.95), "classify_noise_0.4", acc_str(n4) + " (need >= 95%)");
        MovingShapesConfig big = cfg;
        big.size = 64; big.frames = 16;
        Acc b = classify_accuracy(big, 300, 0.2f, 4);
        check(acc_at_least(b, 0.99), "classify_64px_16_frames", acc_str(b));
        std::vector<float> empty((size_t)3 * T * plane, -1.0f);
        MovingShapesGuess g = moving_shapes_classify(empty.data(), T, S, S);
        check(g.frames_found == 0 && g.a.shape < 0 && g.a.color < 0 && g.a.direction < 0 && g.a.speed < 0, "classify_empty_clip", "nothing found: every attribute -1");
    }

    // ---- timing: 4096 clips in memory
    {
        std::vector<float> v((size_t)3 * T * plane);
        const double t0 = wall_seconds();
        double sum = 0;
        for (int i = 0; i < 4096; i++) {
            MovingShapesClip c = moving_shapes_sample(cfg, 0, i);
            moving_shapes_render(cfg, c, v.data());
            std::vector<float> f = moving_shapes_text_features(c.words, D);
            sum += v[i % v.size()] + f[0];
        }
        const double t1 = wall_seconds();
        printf("info generate 4096 clips [3, %d, %d, %d] + text features: %.3f s (checksum %.3f)\n", T, S, S, t1 - t0, sum);
    }

    // ---- a small dataset through the writer and the latent loader
    {
        const std::string out = DIR + "/data";
        const int n_train = 40, n_val = 12, shard = 16;
        moving_shapes_build_dataset(out, cfg, n_train, n_val, shard, LATENT_DTYPE_F32);
        check(file_exists(out + "/train_000.lat") && file_exists(out + "/train_002.lat") && !file_exists(out + "/train_003.lat") &&
              file_exists(out + "/val_000.lat") && file_exists(out + "/meta.txt"),
              "dataset_files", "40 train clips in 3 shards of <= 16, 12 val clips, labels, meta.txt");
        check(moving_shapes_dataset_ready(out, cfg, n_train, n_val, shard, LATENT_DTYPE_F32) &&
              !moving_shapes_dataset_ready(out, cfg, n_train + 1, n_val, shard, LATENT_DTYPE_F32) &&
              !moving_shapes_dataset_ready(DIR + "/nowhere", cfg, n_train, n_val, shard, LATENT_DTYPE_F32),
              "dataset_ready", "true for the same settings, false for other settings or no directory");
        for (int split = 0; split < 2; split++) {
            const std::string name = split ? "val" : "train";
            const int n = split ? n_val : n_train;
            LatentLoader ll;
            latent_loader_init(&ll, out + "/" + name + "_*.lat", 4, 0, 1, 0, 0, 3, D, 6);
            LatentBatch b;
            bool same = true;
            std::string labels = read_file_or_fail(out + "/" + name + "_labels.tsv");
            int label_lines = 0;
            for (char ch : labels) label_lines += ch == '\n';
            for (long long it = 0; it < latent_loader_num_batches(&ll); it++) {
                latent_loader_next(&ll, &b);
                for (int i = 0; i < b.B; i++) {
                    MovingShapesClip c;
                    std::vector<float> v = render(cfg, split, b.index[i], &c);
                    std::vector<float> f = moving_shapes_text_features(c.words, D);
                    const std::string line = str(b.index[i]) + "\t" + MS_SHAPE_NAMES[c.a.shape] + "\t" + MS_COLOR_NAMES[c.a.color] + "\t" +
                                             MS_DIRECTION_NAMES[c.a.direction] + "\t" + MS_SPEED_NAMES[c.a.speed] + "\t" + c.caption + "\n";
                    if (b.T[i] != T || b.H[i] != S || b.W[i] != S || b.source[i] != LATENT_SOURCE_GENERATED || b.fps[i] != cfg.fps ||
                        b.text_len[i] != (int)c.words.size() || b.captions[i] != c.caption || labels.find(line) == std::string::npos ||
                        memcmp(v.data(), &b.latents[b.latent_offset[i]], v.size() * 4) != 0 ||
                        memcmp(f.data(), &b.text[(size_t)b.text_offset[i] * D], f.size() * 4) != 0)
                        same = false;
                }
            }
            check(same && latent_loader_num_samples(&ll) == n && label_lines == n + 1, "dataset_reads_back_" + name,
                  str(n) + " clips: latents, text features, captions, labels equal the generator's");
            latent_loader_free(&ll);
        }
    }

    // ---- the CLI
    if (!file_exists("./moving_shapes")) {
        printf("SKIP moving_shapes_cli: ./moving_shapes not built (make moving_shapes)\n");
    } else {
        const std::string out = DIR + "/cli", ppm = DIR + "/preview.ppm";
        const std::string cmd = "./moving_shapes --out-dir " + out + " --train-samples 20 --val-samples 8 --frames 8 --size 32 --caption-channels 64 --seed 7 --preview " +
                                ppm + " --preview-samples 3 --preview-scale 2 > " + DIR + "/cli.out 2>&1";
        const int rc = system(cmd.c_str());
        MovingShapesConfig c7 = cfg;
        c7.seed = 7;
        std::string img = file_exists(ppm) ? read_file_or_fail(ppm) : "";
        const int PW = 8 * (32 * 2 + 1) + 1, PH = 3 * (32 * 2 + 1) + 1;
        const std::string head = "P6\n" + str(PW) + " " + str(PH) + "\n255\n";
        check(rc == 0 && moving_shapes_dataset_ready(out, c7, 20, 8, 1024, LATENT_DTYPE_F32), "cli_dataset", cmd.substr(0, cmd.find(" --preview")));
        check(img.size() == head.size() + (size_t)PW * PH * 3 && img.compare(0, head.size(), head) == 0, "cli_preview_ppm",
              "binary PPM " + str(PW) + "x" + str(PH) + " (3 clips x 8 frames, scale 2)");
        const std::string bad = "./moving_shapes --out-dir " + out + " --frames 1 > /dev/null 2> " + DIR + "/cli_bad.err";
        const int rc2 = system(bad.c_str());
        std::string err = read_file_or_fail(DIR + "/cli_bad.err");
        size_t lines = 0;
        for (char ch : err) lines += ch == '\n';
        check(WIFEXITED(rc2) && WEXITSTATUS(rc2) == 1 && lines == 1, "cli_bad_frames", "exit 1, one line: " + err.substr(0, err.size() ? err.size() - 1 : 0));
    }

    printf("%s\n", n_failed ? "some moving shapes tests FAILED" : "all moving shapes tests passed");
    return n_failed ? 1 : 0;
}

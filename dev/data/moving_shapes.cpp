/*
moving_shapes: writes the built-in "moving shapes" text-to-video dataset
(llmc/data/moving_shapes.h has the details) as latent shards the DiT trainer reads,
and/or a quick-look picture of some clips.

  make moving_shapes
  ./moving_shapes --out-dir data/moving_shapes --train-samples 4096 --val-samples 256 --frames 8 --size 32 --caption-channels 64 --seed 1337
  ./moving_shapes --preview shapes.ppm      (one row per clip, frames left to right; captions on stdout)
  ./train_dit --train-data "data/moving_shapes/train_*.lat" --val-data "data/moving_shapes/val_*.lat" --in-channels 3 --caption-channels 64
*/
#include <ctime>
#include <string>
#include <vector>
#include "../../llmc/core/utils.h"
#include "../../llmc/core/args.h"
#include "../../llmc/data/moving_shapes.h"

int main(int argc, char** argv) {
    std::string out_dir, preview, dtype_name = "f32";
    long long n_train = 4096, n_val = 256;
    long long seed = 1337;
    int shard_samples = 1024, preview_samples = 6, preview_scale = 4;
    MovingShapesConfig cfg;
    ArgParser ap;
    ap.program = "moving_shapes";
    ap.usage = "./moving_shapes --out-dir data/moving_shapes [--train-samples 4096 --val-samples 256 --frames 8 --size 32 --caption-channels 64 --seed 1337] [--preview out.ppm]";
    ap.section("dataset");
    ap.add_string("--out-dir", &out_dir, "directory for train_*.lat, val_*.lat, *_labels.tsv, meta.txt (empty: no dataset)");
    ap.add_int64("--train-samples", &n_train, "training clips");
    ap.add_int64("--val-samples", &n_val, "validation clips");
    ap.add_int("--frames", &cfg.frames, "frames per clip T");
    ap.add_int("--size", &cfg.size, "frame height = width in pixels");
    ap.add_int("--caption-channels", &cfg.caption_channels, "text feature channels (the DiT's caption_channels)");
    ap.add_int64("--seed", &seed, "generator seed (train and val clips are functions of it)");
    ap.add_float("--fps", &cfg.fps, "fps stored with every clip");
    ap.add_int("--shard-samples", &shard_samples, "clips per shard file");
    ap.add_string("--dtype", &dtype_name, "stored dtype: f32 or bf16");
    ap.section("quick look");
    ap.add_string("--preview", &preview, "write a binary PPM of the first training clips here (empty: none)");
    ap.add_int("--preview-samples", &preview_samples, "clips in the preview (rows)");
    ap.add_int("--preview-scale", &preview_scale, "preview pixels per clip pixel");
    if (!ap.parse(argc, argv)) { ap.print_help(); return 0; }
    if (out_dir.empty() && preview.empty()) fail("give --out-dir (write the dataset) and/or --preview (write a picture); see --help");
    if (n_train <= 0) fail("flag --train-samples: must be > 0, got %lld", n_train);
    if (n_val <= 0) fail("flag --val-samples: must be > 0, got %lld", n_val);
    if (cfg.frames < 2 || cfg.frames > 1024) fail("flag --frames: must be in [2, 1024], got %d", cfg.frames);
    if (cfg.size < 16 || cfg.size > 1024) fail("flag --size: must be in [16, 1024], got %d", cfg.size);
    if (cfg.caption_channels <= 0 || cfg.caption_channels > LATENT_MAX_DIM) fail("flag --caption-channels: must be in [1, %d], got %d", LATENT_MAX_DIM, cfg.caption_channels);
    if (seed < 0) fail("flag --seed: must be >= 0, got %lld", seed);
    if (!(cfg.fps > 0)) fail("flag --fps: must be > 0, got %g", cfg.fps);
    if (shard_samples <= 0) fail("flag --shard-samples: must be > 0, got %d", shard_samples);
    if (dtype_name != "f32" && dtype_name != "bf16") fail("flag --dtype: expected f32 or bf16, got '%s'", dtype_name.c_str());
    if (preview_samples <= 0 || preview_samples > 256) fail("flag --preview-samples: must be in [1, 256], got %d", preview_samples);
    if (preview_scale < 1 || preview_scale > 64) fail("flag --preview-scale: must be in [1, 64], got %d", preview_scale);
    cfg.seed = (uint64_t)seed;
    const int dtype = dtype_name == "bf16" ? LATENT_DTYPE_BF16 : LATENT_DTYPE_F32;
    moving_shapes_check_config(cfg);

    if (!preview.empty()) {
        const size_t n = (size_t)3 * cfg.frames * cfg.size * cfg.size;
        std::vector<std::vector<float>> clips(preview_samples, std::vector<float>(n));
        std::vector<const float*> ptrs;
        for (int i = 0; i < preview_samples; i++) {
            MovingShapesClip c = moving_shapes_sample(cfg, 0, i);
            moving_shapes_render(cfg, c, clips[i].data());
            ptrs.push_back(clips[i].data());
            printf("row %d: %s (%s %s %s %s)\n", i, c.caption.c_str(), MS_COLOR_NAMES[c.a.color], MS_SHAPE_NAMES[c.a.shape],
                   MS_DIRECTION_NAMES[c.a.direction], MS_SPEED_NAMES[c.a.speed]);
        }
        moving_shapes_write_ppm(preview, ptrs, cfg.frames, cfg.size, cfg.size, preview_scale);
        printf("moving_shapes: wrote %s (%d clips x %d frames)\n", preview.c_str(), preview_samples, cfg.frames);
    }
    if (!out_dir.empty()) {
        const double t0 = wall_seconds();
        moving_shapes_build_dataset(out_dir, cfg, n_train, n_val, shard_samples, dtype);
        const double bytes = (double)(n_train + n_val) * 3 * cfg.frames * cfg.size * cfg.size * latent_dtype_bytes(dtype);
        printf("moving_shapes: wrote %lld train + %lld val clips [3, %d, %d, %d] %s (%.1f MB of latents) to %s in %.2f s\n", n_train, n_val,
               cfg.frames, cfg.size, cfg.size, dtype_name.c_str(), bytes / 1e6, out_dir.c_str(), wall_seconds() - t0);
    }
    return 0;
}

/*
Pictures of video samples without any library: an animated GIF writer (GIF89a,
LZW) for one clip, and a PNG writer for a grid of clips (rows = samples,
columns = frames). Both write atomically (a temporary file, fsync, rename).

GIF
---
gif_write(path, frames, W, H, delay_cs, palette) writes frames (each W*H RGB8,
row-major) as one animation: a 256-entry global color table, one Graphic
Control Extension per frame (delay in 1/100 s, disposal "leave in place", no
transparency), the NETSCAPE2.0 extension with loop count 0 (loop forever).
Palette:
  GIF_PALETTE_AUTO   the exact colors when all frames together use at most 256
                     (a generator's clip does: background, 7 colors x 16
                     anti-aliasing levels at most), else the fixed palette
  GIF_PALETTE_FIXED  always the fixed palette (gif_fixed_palette); a color not in
                     it becomes its nearest entry (squared RGB distance, lowest
                     index on ties)
The fixed palette suits the moving-shapes colors, which are the 7 non-black
corners of the RGB cube drawn anti-aliased over black, so every pixel of a clip
is black + a * corner: black, then for each corner (red, green, blue, yellow,
cyan, magenta, white: llmc/data/moving_shapes.h's order) the 32 levels
round(255 k / 32), k = 1..32, then the colors of the {0, 128, 255} and
{64, 192} cubes not already there, then black again up to 256 entries. Every
level a 4x4-supersampled edge can take (a = hits / 16) is an entry, so a
generator clip round-trips exactly in either mode; a model's sample (any color)
is shown with its nearest entries.
LZW: minimum code size 8, codes of 9..12 bits (no "early change", as GIF
decoders expect), a clear code first and whenever the table reaches 4096
entries, the end-of-information code last; data in sub-blocks of <= 255 bytes.

PNG
---
png_write_rgb(path, rgb, W, H): 8-bit RGB, no interlace. Every row uses filter
"Up" (the difference to the row above: a picture drawn with scale x scale pixels
repeats rows, which become zeros), compressed as one fixed-Huffman deflate block
whose only matches are runs (distance 1): simple, exact, and small for mostly
black pictures. zlib wrapper with Adler-32, CRC-32 per chunk.

Clips
-----
A clip is float [C, T, H, W] with values in [-1, 1] (moving shapes: RGB
pixels; a latent: its first three channels as RGB, one channel as gray).
clip_to_rgb_frames turns one into T RGB8 frames (each pixel drawn scale x
scale), clips_grid_rgb / write_clip_grid_png draw several clips as one picture:
one row per clip, its frames left to right, 1-pixel gray (128) lines between
them and around, like moving_shapes_write_ppm.
*/
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>  // utils.h uses clock_gettime
#include <string>
#include <unordered_map>
#include <vector>
#include "../core/utils.h"

enum { GIF_PALETTE_AUTO = 0, GIF_PALETTE_FIXED = 1 };

// ----------------------------------------------------------------------------
// Palette

// 256 RGB entries (768 bytes), see the top of this file.
static inline std::vector<uint8_t> gif_fixed_palette() {
    static const int corners[7][3] = {{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 1, 0}, {0, 1, 1}, {1, 0, 1}, {1, 1, 1}};
    std::vector<uint8_t> p;
    p.reserve(768);
    auto has = [&](int r, int g, int b) {
        for (size_t i = 0; i < p.size(); i += 3)
            if (p[i] == r && p[i + 1] == g && p[i + 2] == b) return true;
        return false;
    };
    auto add = [&](int r, int g, int b) { p.push_back((uint8_t)r); p.push_back((uint8_t)g); p.push_back((uint8_t)b); };
    add(0, 0, 0);
    for (const auto& c : corners)
        for (int k = 1; k <= 32; k++) {
            const int v = (int)std::lround(255.0 * k / 32.0);
            add(c[0] * v, c[1] * v, c[2] * v);
        }
    for (const std::vector<int>& levels : {std::vector<int>{0, 128, 255}, std::vector<int>{64, 192}})
        for (int r : levels)
            for (int g : levels)
                for (int b : levels)
                    if (p.size() < 768 && !has(r, g, b)) add(r, g, b);
    while (p.size() < 768) add(0, 0, 0);
    return p;
}

static inline uint32_t gif_rgb_key(const uint8_t* px) { return ((uint32_t)px[0] << 16) | ((uint32_t)px[1] << 8) | px[2]; }

// Index of the entry nearest to px (squared distance, lowest index on ties).
static inline int gif_nearest(const std::vector<uint8_t>& pal, int n, const uint8_t* px) {
    int best = 0;
    long bestd = -1;
    for (int i = 0; i < n; i++) {
        const long dr = (long)px[0] - pal[3 * i], dg = (long)px[1] - pal[3 * i + 1], db = (long)px[2] - pal[3 * i + 2];
        const long d = dr * dr + dg * dg + db * db;
        if (bestd < 0 || d < bestd) { bestd = d; best = i; }
    }
    return best;
}

// ----------------------------------------------------------------------------
// LZW (GIF flavor)

struct GifBitWriter {
    std::vector<uint8_t>* out;
    uint32_t acc = 0;
    int nbits = 0;
    void put(int code, int width) {
        acc |= (uint32_t)code << nbits;
        nbits += width;
        while (nbits >= 8) { out->push_back((uint8_t)(acc & 0xff)); acc >>= 8; nbits -= 8; }
    }
    void flush() {
        if (nbits > 0) out->push_back((uint8_t)(acc & 0xff));
        acc = 0; nbits = 0;
    }
};

// Appends the LZW code stream of n color indices (each < 2^min_code_size) to out.
static inline void gif_lzw_encode(const uint8_t* idx, size_t n, int min_code_size, std::vector<uint8_t>* out) {
    const int clear = 1 << min_code_size, eoi = clear + 1;
    int width = min_code_size + 1, next = eoi + 1;
    std::unordered_map<uint32_t, int> dict;   // (prefix code << 8 | index) -> code
    dict.reserve(8192);
    GifBitWriter bw;
    bw.out = out;
    bw.put(clear, width);
    if (n == 0) { bw.put(eoi, width); bw.flush(); return; }
    int cur = idx[0];
    for (size_t i = 1; i < n; i++) {
        const int k = idx[i];
        const uint32_t key = ((uint32_t)cur << 8) | (uint32_t)k;
        auto it = dict.find(key);
        if (it != dict.end()) { cur = it->second; continue; }
        bw.put(cur, width);
        // the decoder adds this entry one code later, after which it widens its
        // codes when its table size reaches 2^width: one entry ahead, we widen past it
        dict[key] = next++;
        if (next > (1 << width) && width < 12) width++;
        cur = k;
        if (next == 4096) {   // table full: start over
            bw.put(clear, width);
            dict.clear();
            width = min_code_size + 1;
            next = eoi + 1;
        }
    }
    bw.put(cur, width);
    // the decoder adds an entry for that last code (unless it is the first after a
    // clear, when next == eoi + 1 and no widening can happen) and may widen first
    if (next == (1 << width) && width < 12) width++;
    bw.put(eoi, width);
    bw.flush();
}

// ----------------------------------------------------------------------------
// GIF file

static inline void gif_put16(std::vector<uint8_t>* b, int v) { b->push_back((uint8_t)(v & 0xff)); b->push_back((uint8_t)((v >> 8) & 0xff)); }

// The whole file in memory (see the top of this file).
static inline std::vector<uint8_t> gif_encode(const std::vector<std::vector<uint8_t>>& frames, int W, int H, int delay_cs, int palette_mode) {
    if (frames.empty()) fail("gif: no frames");
    if (W <= 0 || H <= 0 || W > 65535 || H > 65535) fail("gif: frame size %dx%d outside [1, 65535]", W, H);
    if (delay_cs < 0 || delay_cs > 65535) fail("gif: delay %d outside [0, 65535] (1/100 s)", delay_cs);
    if (palette_mode != GIF_PALETTE_AUTO && palette_mode != GIF_PALETTE_FIXED) fail("gif: unknown palette mode %d", palette_mode);
    const size_t npx = (size_t)W * H;
    for (size_t f = 0; f < frames.size(); f++)
        if (frames[f].size() != npx * 3) fail("gif: frame %zu has %zu bytes (expected %zu = %dx%dx3)", f, frames[f].size(), npx * 3, W, H);
    // palette: the exact colors if they fit, else the fixed one
    std::vector<uint8_t> pal;
    std::unordered_map<uint32_t, int> index;   // color -> palette entry
    bool exact = palette_mode == GIF_PALETTE_AUTO;
    if (exact) {
        for (const std::vector<uint8_t>& fr : frames) {
            for (size_t i = 0; i < npx && exact; i++) {
                const uint32_t key = gif_rgb_key(&fr[3 * i]);
                if (index.count(key)) continue;
                if (index.size() == 256) { exact = false; break; }
                index[key] = (int)index.size();
                pal.insert(pal.end(), &fr[3 * i], &fr[3 * i] + 3);
            }
            if (!exact) break;
        }
        pal.resize(768, 0);
    }
    if (!exact) {
        pal = gif_fixed_palette();
        index.clear();
    }
    std::vector<uint8_t> b = {'G', 'I', 'F', '8', '9', 'a'};
    b.reserve(1024 + frames.size() * npx);
    gif_put16(&b, W);
    gif_put16(&b, H);
    b.push_back(0xF7);   // global color table, 8 bits of color resolution, not sorted, 2^(7+1) entries
    b.push_back(0);      // background color index
    b.push_back(0);      // pixel aspect ratio: not given
    b.insert(b.end(), pal.begin(), pal.end());
    // loop forever
    const uint8_t app[] = {0x21, 0xFF, 11, 'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0', 3, 1, 0, 0, 0};
    b.insert(b.end(), app, app + sizeof(app));
    std::vector<uint8_t> idx(npx), lzw;
    for (const std::vector<uint8_t>& fr : frames) {
        for (size_t i = 0; i < npx; i++) {
            const uint32_t key = gif_rgb_key(&fr[3 * i]);
            auto it = index.find(key);
            if (it == index.end()) it = index.emplace(key, gif_nearest(pal, 256, &fr[3 * i])).first;
            idx[i] = (uint8_t)it->second;
        }
        // graphic control extension: disposal 1 (leave in place), no transparency
        const uint8_t gce[] = {0x21, 0xF9, 4, 0x04, (uint8_t)(delay_cs & 0xff), (uint8_t)(delay_cs >> 8), 0, 0};
        b.insert(b.end(), gce, gce + sizeof(gce));
        b.push_back(0x2C);   // image descriptor: the whole canvas, no local table, not interlaced
        gif_put16(&b, 0); gif_put16(&b, 0); gif_put16(&b, W); gif_put16(&b, H);
        b.push_back(0);
        b.push_back(8);      // LZW minimum code size
        lzw.clear();
        gif_lzw_encode(idx.data(), npx, 8, &lzw);
        for (size_t o = 0; o < lzw.size(); o += 255) {
            const size_t k = std::min<size_t>(255, lzw.size() - o);
            b.push_back((uint8_t)k);
            b.insert(b.end(), lzw.begin() + o, lzw.begin() + o + k);
        }
        b.push_back(0);      // block terminator
    }
    b.push_back(0x3B);       // trailer
    return b;
}

static inline void write_bytes_atomic(const std::string& path, const std::vector<uint8_t>& bytes) {
    make_parent_dirs(path);
    const std::string tmp = path + ".tmp";
    FILE* f = fopen_or_fail(tmp, "wb");
    fwrite_exact(bytes.data(), bytes.size(), f, tmp);
    finish_atomic_write(f, tmp, path);
}

// frames: each W*H*3 bytes RGB; delay_cs: 1/100 s per frame.
static inline void gif_write(const std::string& path, const std::vector<std::vector<uint8_t>>& frames, int W, int H, int delay_cs,
                             int palette_mode = GIF_PALETTE_AUTO) {
    write_bytes_atomic(path, gif_encode(frames, W, H, delay_cs, palette_mode));
}

// ----------------------------------------------------------------------------
// PNG file

static inline uint32_t png_crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
    static uint32_t table[256];
    static bool ready = false;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static inline uint32_t png_adler32(const uint8_t* p, size_t n) {
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < n; i++) { a = (a + p[i]) % 65521u; b = (b + a) % 65521u; }
    return (b << 16) | a;
}

struct PngBitWriter {
    std::vector<uint8_t>* out;
    uint32_t acc = 0;
    int nbits = 0;
    void bits(uint32_t v, int n) {   // LSB first
        acc |= v << nbits;
        nbits += n;
        while (nbits >= 8) { out->push_back((uint8_t)(acc & 0xff)); acc >>= 8; nbits -= 8; }
    }
    void huff(uint32_t code, int len) {   // Huffman codes go most significant bit first
        uint32_t r = 0;
        for (int i = 0; i < len; i++) r |= ((code >> i) & 1u) << (len - 1 - i);
        bits(r, len);
    }
    void literal(int v) {   // fixed literal/length code of symbol v (0..287)
        if (v < 144) huff(0x30 + v, 8);
        else if (v < 256) huff(0x190 + (v - 144), 9);
        else if (v < 280) huff(v - 256, 7);
        else huff(0xC0 + (v - 280), 8);
    }
    void flush() {
        if (nbits > 0) out->push_back((uint8_t)(acc & 0xff));
        acc = 0; nbits = 0;
    }
};

// zlib stream of data: one final fixed-Huffman block, literals and runs (distance 1).
static inline std::vector<uint8_t> png_deflate_runs(const std::vector<uint8_t>& data) {
    static const int base[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int extra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    std::vector<uint8_t> out = {0x78, 0x01};   // deflate, 32K window, no dictionary, fastest
    PngBitWriter bw;
    bw.out = &out;
    bw.bits(1, 1);   // BFINAL
    bw.bits(1, 2);   // BTYPE 01: fixed Huffman codes
    const size_t n = data.size();
    size_t i = 0;
    while (i < n) {
        size_t run = 0;
        if (i > 0)
            while (i + run < n && run < 258 && data[i + run] == data[i - 1]) run++;
        if (run >= 3) {
            int s = 28;
            while (base[s] > (int)run) s--;
            bw.literal(257 + s);
            if (extra[s]) bw.bits((uint32_t)(run - base[s]), extra[s]);
            bw.huff(0, 5);   // distance code 0: distance 1
            i += run;
        } else {
            bw.literal(data[i]);
            i++;
        }
    }
    bw.literal(256);   // end of block
    bw.flush();
    const uint32_t ad = png_adler32(data.data(), n);
    for (int s = 24; s >= 0; s -= 8) out.push_back((uint8_t)(ad >> s));
    return out;
}

static inline void png_chunk(std::vector<uint8_t>* b, const char* type, const std::vector<uint8_t>& data) {
    const uint32_t n = (uint32_t)data.size();
    for (int s = 24; s >= 0; s -= 8) b->push_back((uint8_t)(n >> s));
    const size_t start = b->size();
    b->insert(b->end(), type, type + 4);
    b->insert(b->end(), data.begin(), data.end());
    const uint32_t crc = png_crc32(b->data() + start, b->size() - start);
    for (int s = 24; s >= 0; s -= 8) b->push_back((uint8_t)(crc >> s));
}

// rgb: W*H*3 bytes, row-major.
static inline std::vector<uint8_t> png_encode_rgb(const uint8_t* rgb, int W, int H) {
    if (W <= 0 || H <= 0 || W > (1 << 24) || H > (1 << 24)) fail("png: size %dx%d outside [1, 2^24]", W, H);
    const size_t row = (size_t)W * 3;
    std::vector<uint8_t> raw;
    raw.reserve((row + 1) * H);
    for (int y = 0; y < H; y++) {
        raw.push_back(2);   // filter Up
        const uint8_t* cur = rgb + (size_t)y * row;
        for (size_t i = 0; i < row; i++) raw.push_back((uint8_t)(cur[i] - (y > 0 ? cur[i - row] : 0)));
    }
    std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    std::vector<uint8_t> ihdr;
    for (int v : {W, H})
        for (int s = 24; s >= 0; s -= 8) ihdr.push_back((uint8_t)((uint32_t)v >> s));
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});   // 8 bits, RGB, deflate, adaptive filters, no interlace
    png_chunk(&b, "IHDR", ihdr);
    png_chunk(&b, "IDAT", png_deflate_runs(raw));
    png_chunk(&b, "IEND", {});
    return b;
}

static inline void png_write_rgb(const std::string& path, const uint8_t* rgb, int W, int H) {
    write_bytes_atomic(path, png_encode_rgb(rgb, W, H));
}

// ----------------------------------------------------------------------------
// Clips -> pictures

static inline uint8_t clip_value_to_u8(float v) {
    if (!(v == v)) return 0;   // NaN shows black
    return (uint8_t)std::lround(std::min(255.0f, std::max(0.0f, (v + 1.0f) * 127.5f)));
}

// clip [C, T, H, W] -> T frames of (W*scale) x (H*scale) RGB8.
static inline std::vector<std::vector<uint8_t>> clip_to_rgb_frames(const float* clip, int C, int T, int H, int W, int scale) {
    if (C <= 0 || T <= 0 || H <= 0 || W <= 0) fail("clip picture: shape [%d, %d, %d, %d] must be positive", C, T, H, W);
    if (scale < 1 || scale > 64) fail("clip picture: scale must be in [1, 64], got %d", scale);
    const size_t plane = (size_t)H * W;
    const int SW = W * scale, SH = H * scale;
    std::vector<std::vector<uint8_t>> frames(T, std::vector<uint8_t>((size_t)SW * SH * 3));
    for (int t = 0; t < T; t++)
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++) {
                const size_t src = (size_t)t * plane + (size_t)(y / scale) * W + x / scale;
                uint8_t* dst = &frames[t][((size_t)y * SW + x) * 3];
                for (int c = 0; c < 3; c++) dst[c] = clip_value_to_u8(clip[(size_t)(C >= 3 ? c : 0) * T * plane + src]);
            }
    return frames;
}

// One row per clip, its frames left to right; *PW x *PH RGB8 picture.
static inline std::vector<uint8_t> clips_grid_rgb(const std::vector<const float*>& clips, int C, int T, int H, int W, int scale, int* PW, int* PH) {
    if (clips.empty()) fail("clip grid: no clips to draw");
    const int n = (int)clips.size();
    *PW = T * (W * scale + 1) + 1;
    *PH = n * (H * scale + 1) + 1;
    std::vector<uint8_t> img((size_t)*PW * *PH * 3, 128);
    for (int r = 0; r < n; r++) {
        const std::vector<std::vector<uint8_t>> fr = clip_to_rgb_frames(clips[r], C, T, H, W, scale);
        const int SW = W * scale, SH = H * scale;
        for (int t = 0; t < T; t++)
            for (int y = 0; y < SH; y++) {
                const size_t dst = ((size_t)(1 + r * (SH + 1) + y) * *PW + (1 + t * (SW + 1))) * 3;
                std::copy(fr[t].begin() + (size_t)y * SW * 3, fr[t].begin() + (size_t)(y + 1) * SW * 3, img.begin() + dst);
            }
    }
    return img;
}

static inline void write_clip_grid_png(const std::string& path, const std::vector<const float*>& clips, int C, int T, int H, int W, int scale) {
    int PW, PH;
    const std::vector<uint8_t> img = clips_grid_rgb(clips, C, T, H, W, scale, &PW, &PH);
    png_write_rgb(path, img.data(), PW, PH);
}

// One clip as an animated GIF, frame delay delay_cs (1/100 s).
static inline void write_clip_gif(const std::string& path, const float* clip, int C, int T, int H, int W, int scale, int delay_cs) {
    gif_write(path, clip_to_rgb_frames(clip, C, T, H, W, scale), W * scale, H * scale, delay_cs, GIF_PALETTE_AUTO);
}

/*
Tests of llmc/train/gif.h: GIFs and PNGs are decoded back by decoders written here
(LZW for the GIF; inflate of stored and fixed-Huffman blocks and the five row
filters for the PNG), independent of the writers' code, and compared pixel for
pixel. Output under test/tmp/gif/.

  make test/test_gif && ./test/test_gif
*/
#include <ctime>
#include <map>
#include <set>
#include <string>
#include <vector>
#include "../llmc/core/utils.h"
#include "test_util.h"
#include "../llmc/core/rand.h"
#include "../llmc/train/gif.h"
#include "../llmc/data/moving_shapes.h"

static const std::string DIR = "test/tmp/gif";
static std::string str(long long x) { return std::to_string(x); }

static std::vector<uint8_t> read_bytes(const std::string& path) {
    const std::string s = read_file_or_fail(path);
    return std::vector<uint8_t>(s.begin(), s.end());
}

// ----------------------------------------------------------------------------
// GIF decoder (GIF89a/87a, global and local color tables, no interlace needed here)

struct GifDecoded {
    int W = 0, H = 0;
    int loop = -1;                            // NETSCAPE2.0 loop count (-1: no extension)
    int gct_entries = 0;
    std::vector<int> delays;                  // per frame, 1/100 s (-1: no GCE)
    std::vector<std::vector<uint8_t>> frames; // RGB8, W*H*3
    int clears = 0;                           // clear codes seen (over all frames)
    int max_width = 0;                        // widest code read
};

struct BitReader {
    const std::vector<uint8_t>& d;
    size_t pos = 0;
    int bit = 0;
    explicit BitReader(const std::vector<uint8_t>& data) : d(data) {}
    bool read(int n, int* v) {   // LSB first
        int x = 0;
        for (int i = 0; i < n; i++) {
            if (pos >= d.size()) return false;
            x |= ((d[pos] >> bit) & 1) << i;
            if (++bit == 8) { bit = 0; pos++; }
        }
        *v = x;
        return true;
    }
};

// LZW data -> color indices; false with a reason on any error.
static bool lzw_decode(const std::vector<uint8_t>& data, int min_code_size, size_t expect, std::vector<uint8_t>* out, GifDecoded* g, std::string* err) {
    const int clear = 1 << min_code_size, eoi = clear + 1;
    std::vector<std::vector<uint8_t>> table;
    auto reset = [&]() {
        table.assign(clear + 2, {});
        for (int i = 0; i < clear; i++) table[i] = {(uint8_t)i};
    };
    reset();
    int width = min_code_size + 1, prev = -1;
    BitReader br(data);
    bool first = true;
    for (;;) {
        int code;
        if (!br.read(width, &code)) { *err = "LZW data ended without an end-of-information code"; return false; }
        g->max_width = std::max(g->max_width, width);
        if (first && code != clear) { *err = "LZW data does not start with a clear code"; return false; }
        first = false;
        if (code == clear) { reset(); width = min_code_size + 1; prev = -1; g->clears++; continue; }
        if (code == eoi) break;
        std::vector<uint8_t> entry;
        if (prev < 0) {
            if (code >= clear) { *err = "first code after clear is not a root code: " + str(code); return false; }
            entry = table[code];
        } else {
            if (code < (int)table.size()) entry = table[code];
            else if (code == (int)table.size()) { entry = table[prev]; entry.push_back(table[prev][0]); }
            else { *err = "code " + str(code) + " beyond the table (" + str(table.size()) + ")"; return false; }
            if (table.size() < 4096) {
                std::vector<uint8_t> e = table[prev];
                e.push_back(entry[0]);
                table.push_back(e);
            }
            if ((int)table.size() == (1 << width) && width < 12) width++;
        }
        out->insert(out->end(), entry.begin(), entry.end());
        prev = code;
    }
    if (out->size() != expect) { *err = "decoded " + str(out->size()) + " indices, expected " + str(expect); return false; }
    return true;
}

static bool gif_decode(const std::vector<uint8_t>& b, GifDecoded* g, std::string* err) {
    size_t p = 0;
    auto need = [&](size_t n) { return p + n <= b.size(); };
    auto u16 = [&](size_t at) { return (int)b[at] | ((int)b[at + 1] << 8); };
    if (!need(13) || std::string(b.begin(), b.begin() + 6) != "GIF89a") { *err = "no GIF89a header"; return false; }
    g->W = u16(6); g->H = u16(8);
    const int packed = b[10];
    p = 13;
    std::vector<uint8_t> gct;
    if (packed & 0x80) {
        g->gct_entries = 1 << ((packed & 7) + 1);
        if (!need(3 * g->gct_entries)) { *err = "truncated global color table"; return false; }
        gct.assign(b.begin() + p, b.begin() + p + 3 * g->gct_entries);
        p += 3 * g->gct_entries;
    }
    std::vector<uint8_t> canvas((size_t)g->W * g->H * 3, 0);
    int delay = -1;
    for (;;) {
        if (!need(1)) { *err = "missing trailer"; return false; }
        const int kind = b[p++];
        if (kind == 0x3B) break;
        if (kind == 0x21) {
            if (!need(1)) { *err = "truncated extension"; return false; }
            const int label = b[p++];
            std::vector<uint8_t> body;
            std::vector<std::vector<uint8_t>> blocks;
            for (;;) {
                if (!need(1)) { *err = "truncated sub-block"; return false; }
                const int n = b[p++];
                if (n == 0) break;
                if (!need(n)) { *err = "truncated sub-block data"; return false; }
                blocks.emplace_back(b.begin() + p, b.begin() + p + n);
                p += n;
            }
            if (label == 0xF9) {
                if (blocks.size() != 1 || blocks[0].size() != 4) { *err = "bad graphic control extension"; return false; }
                delay = blocks[0][1] | (blocks[0][2] << 8);
            } else if (label == 0xFF && !blocks.empty() && std::string(blocks[0].begin(), blocks[0].end()) == "NETSCAPE2.0") {
                if (blocks.size() != 2 || blocks[1].size() != 3 || blocks[1][0] != 1) { *err = "bad NETSCAPE2.0 extension"; return false; }
                g->loop = blocks[1][1] | (blocks[1][2] << 8);
            }
            continue;
        }
        if (kind != 0x2C) { *err = "unexpected block 0x" + str(kind); return false; }
        if (!need(9)) { *err = "truncated image descriptor"; return false; }
        const int x0 = u16(p), y0 = u16(p + 2), w = u16(p + 4), h = u16(p + 6), ip = b[p + 8];
        p += 9;
        if (ip & 0x40) { *err = "interlaced frame (not written by gif.h)"; return false; }
        if (x0 + w > g->W || y0 + h > g->H) { *err = "frame outside the canvas"; return false; }
        std::vector<uint8_t> pal = gct;
        if (ip & 0x80) {
            const int n = 1 << ((ip & 7) + 1);
            if (!need(3 * n)) { *err = "truncated local color table"; return false; }
            pal.assign(b.begin() + p, b.begin() + p + 3 * n);
            p += 3 * n;
        }
        if (!need(1)) { *err = "missing LZW minimum code size"; return false; }
        const int mcs = b[p++];
        if (mcs < 2 || mcs > 8) { *err = "bad LZW minimum code size " + str(mcs); return false; }
        std::vector<uint8_t> data;
        for (;;) {
            if (!need(1)) { *err = "truncated image data"; return false; }
            const int n = b[p++];
            if (n == 0) break;
            if (!need(n)) { *err = "truncated image sub-block"; return false; }
            data.insert(data.end(), b.begin() + p, b.begin() + p + n);
            p += n;
        }
        std::vector<uint8_t> idx;
        if (!lzw_decode(data, mcs, (size_t)w * h, &idx, g, err)) return false;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const int k = idx[(size_t)y * w + x];
                if (3 * k + 2 >= (int)pal.size()) { *err = "index " + str(k) + " beyond the color table"; return false; }
                for (int c = 0; c < 3; c++) canvas[((size_t)(y0 + y) * g->W + x0 + x) * 3 + c] = pal[3 * k + c];
            }
        g->frames.push_back(canvas);
        g->delays.push_back(delay);
        delay = -1;
    }
    if (p != b.size()) { *err = "bytes after the trailer"; return false; }
    return true;
}

// ----------------------------------------------------------------------------
// PNG decoder (8-bit RGB, no interlace; inflate: stored and fixed-Huffman blocks)

static uint32_t be32(const std::vector<uint8_t>& b, size_t at) {
    return ((uint32_t)b[at] << 24) | ((uint32_t)b[at + 1] << 16) | ((uint32_t)b[at + 2] << 8) | b[at + 3];
}

struct Inflater {
    BitReader br;
    explicit Inflater(const std::vector<uint8_t>& d) : br(d) {}
    bool bits(int n, int* v) { return br.read(n, v); }
    // fixed literal/length symbol: read MSB-first codes of 7..9 bits
    bool fixed_litlen(int* sym) {
        int code = 0, b;
        for (int len = 1; len <= 9; len++) {
            if (!br.read(1, &b)) return false;
            code = (code << 1) | b;
            if (len == 7 && code <= 0x17) { *sym = 256 + code; return true; }
            if (len == 8 && code >= 0x30 && code <= 0xBF) { *sym = code - 0x30; return true; }
            if (len == 8 && code >= 0xC0 && code <= 0xC7) { *sym = 280 + code - 0xC0; return true; }
            if (len == 9 && code >= 0x190) { *sym = 144 + code - 0x190; return true; }
        }
        return false;
    }
};

static bool inflate_zlib(const std::vector<uint8_t>& z, std::vector<uint8_t>* out, std::string* err) {
    static const int lbase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const int lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const int dbase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    static const int dext[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};
    if (z.size() < 6) { *err = "zlib stream too short"; return false; }
    if ((z[0] & 0x0f) != 8 || ((z[0] << 8) | z[1]) % 31 != 0 || (z[1] & 0x20)) { *err = "bad zlib header"; return false; }
    std::vector<uint8_t> body(z.begin() + 2, z.end());
    Inflater in(body);
    int final_ = 0;
    while (!final_) {
        int type;
        if (!in.bits(1, &final_) || !in.bits(2, &type)) { *err = "truncated block header"; return false; }
        if (type == 0) {
            if (in.br.bit) { in.br.bit = 0; in.br.pos++; }
            if (in.br.pos + 4 > body.size()) { *err = "truncated stored block"; return false; }
            const int len = body[in.br.pos] | (body[in.br.pos + 1] << 8), nlen = body[in.br.pos + 2] | (body[in.br.pos + 3] << 8);
            if ((len ^ 0xffff) != nlen) { *err = "stored block length check"; return false; }
            in.br.pos += 4;
            if (in.br.pos + len > body.size()) { *err = "truncated stored data"; return false; }
            out->insert(out->end(), body.begin() + in.br.pos, body.begin() + in.br.pos + len);
            in.br.pos += len;
        } else if (type == 1) {
            for (;;) {
                int sym;
                if (!in.fixed_litlen(&sym)) { *err = "bad literal/length code"; return false; }
                if (sym < 256) { out->push_back((uint8_t)sym); continue; }
                if (sym == 256) break;
                if (sym > 285) { *err = "bad length symbol"; return false; }
                int e = 0, dsym = 0, de = 0, b;
                if (lext[sym - 257] && !in.bits(lext[sym - 257], &e)) { *err = "truncated length"; return false; }
                const int len = lbase[sym - 257] + e;
                for (int i = 0; i < 5; i++) {   // fixed distance codes: 5 bits, MSB first
                    if (!in.bits(1, &b)) { *err = "truncated distance"; return false; }
                    dsym = (dsym << 1) | b;
                }
                if (dsym > 29) { *err = "bad distance symbol"; return false; }
                if (dext[dsym] && !in.bits(dext[dsym], &de)) { *err = "truncated distance"; return false; }
                const size_t dist = dbase[dsym] + de;
                if (dist > out->size()) { *err = "distance beyond the output"; return false; }
                for (int i = 0; i < len; i++) out->push_back((*out)[out->size() - dist]);
            }
        } else {
            *err = "block type " + str(type) + " (the test inflater reads stored and fixed blocks only)";
            return false;
        }
    }
    if (in.br.bit) { in.br.bit = 0; in.br.pos++; }
    if (in.br.pos + 4 != body.size()) { *err = "bytes after the deflate stream: " + str((long long)body.size() - (long long)in.br.pos); return false; }
    if (be32(body, in.br.pos) != png_adler32(out->data(), out->size())) { *err = "Adler-32 mismatch"; return false; }
    return true;
}

static bool png_decode(const std::vector<uint8_t>& b, int* W, int* H, std::vector<uint8_t>* rgb, std::string* err) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (b.size() < 8 || !std::equal(sig, sig + 8, b.begin())) { *err = "no PNG signature"; return false; }
    size_t p = 8;
    std::vector<uint8_t> idat;
    bool have_hdr = false, end = false;
    while (p + 12 <= b.size()) {
        const uint32_t n = be32(b, p);
        const std::string type(b.begin() + p + 4, b.begin() + p + 8);
        if (p + 12 + n > b.size()) { *err = "truncated chunk " + type; return false; }
        if (png_crc32(&b[p + 4], n + 4) != be32(b, p + 8 + n)) { *err = "CRC mismatch in " + type; return false; }
        const std::vector<uint8_t> d(b.begin() + p + 8, b.begin() + p + 8 + n);
        if (type == "IHDR") {
            if (n != 13) { *err = "bad IHDR"; return false; }
            *W = (int)be32(d, 0); *H = (int)be32(d, 4);
            if (d[8] != 8 || d[9] != 2 || d[10] != 0 || d[11] != 0 || d[12] != 0) { *err = "not 8-bit RGB, non-interlaced"; return false; }
            have_hdr = true;
        } else if (type == "IDAT") {
            idat.insert(idat.end(), d.begin(), d.end());
        } else if (type == "IEND") {
            end = true;
            p += 12 + n;
            break;
        }
        p += 12 + n;
    }
    if (!have_hdr || !end || p != b.size()) { *err = "missing IHDR/IEND or bytes after IEND"; return false; }
    std::vector<uint8_t> raw;
    if (!inflate_zlib(idat, &raw, err)) return false;
    const size_t row = (size_t)*W * 3;
    if (raw.size() != (row + 1) * *H) { *err = "inflated " + str(raw.size()) + " bytes, expected " + str((row + 1) * *H); return false; }
    rgb->assign(row * *H, 0);
    for (int y = 0; y < *H; y++) {
        const int f = raw[(row + 1) * y];
        const uint8_t* s = &raw[(row + 1) * y + 1];
        uint8_t* o = &(*rgb)[row * y];
        for (size_t i = 0; i < row; i++) {
            const int a = i >= 3 ? o[i - 3] : 0, up = y > 0 ? o[(long)i - (long)row] : 0, c = (i >= 3 && y > 0) ? o[(long)i - (long)row - 3] : 0;
            int pred = 0;
            switch (f) {
                case 0: pred = 0; break;
                case 1: pred = a; break;
                case 2: pred = up; break;
                case 3: pred = (a + up) / 2; break;
                case 4: {
                    const int pp = a + up - c, pa = abs(pp - a), pb = abs(pp - up), pc = abs(pp - c);
                    pred = (pa <= pb && pa <= pc) ? a : pb <= pc ? up : c;
                    break;
                }
                default: *err = "bad filter " + str(f); return false;
            }
            o[i] = (uint8_t)(s[i] + pred);
        }
    }
    return true;
}

// ----------------------------------------------------------------------------

static std::vector<std::vector<uint8_t>> random_frames(Rng* r, int W, int H, int T, const std::vector<uint8_t>& colors) {
    const int nc = (int)colors.size() / 3;
    std::vector<std::vector<uint8_t>> f(T, std::vector<uint8_t>((size_t)W * H * 3));
    for (auto& fr : f)
        for (size_t i = 0; i < (size_t)W * H; i++) {
            const int k = (int)(rng_u32(r) % nc);
            for (int c = 0; c < 3; c++) fr[3 * i + c] = colors[3 * k + c];
        }
    return f;
}

static bool same_frames(const GifDecoded& d, const std::vector<std::vector<uint8_t>>& want, std::string* why) {
    if (d.frames.size() != want.size()) { *why = str(d.frames.size()) + " frames, expected " + str(want.size()); return false; }
    for (size_t t = 0; t < want.size(); t++)
        for (size_t i = 0; i < want[t].size(); i++)
            if (d.frames[t][i] != want[t][i]) {
                *why = "frame " + str(t) + " byte " + str(i) + ": " + str(d.frames[t][i]) + " != " + str(want[t][i]);
                return false;
            }
    return true;
}

// Writes, reads back and decodes; checks the frames against want and the header fields.
static void roundtrip(const std::string& name, const std::vector<std::vector<uint8_t>>& frames, int W, int H, int delay, int mode,
                      const std::vector<std::vector<uint8_t>>& want, GifDecoded* out = nullptr) {
    const std::string path = DIR + "/" + name + ".gif";
    gif_write(path, frames, W, H, delay, mode);
    GifDecoded d;
    std::string err;
    const bool ok = gif_decode(read_bytes(path), &d, &err);
    check(ok, "gif " + name + " decodes", ok ? str(d.frames.size()) + " frames, " + str(d.clears) + " clear codes, codes up to " + str(d.max_width) + " bits" : err);
    if (!ok) return;
    std::string why;
    check(d.W == W && d.H == H && d.loop == 0 && d.gct_entries == 256, "gif " + name + " header",
          str(d.W) + "x" + str(d.H) + ", loop " + str(d.loop) + ", " + str(d.gct_entries) + " colors");
    bool delays_ok = true;
    for (int x : d.delays) delays_ok = delays_ok && x == delay;
    check(delays_ok, "gif " + name + " delays", "every frame " + str(delay) + " cs");
    check(same_frames(d, want, &why), "gif " + name + " frames round-trip", why.empty() ? "exact" : why);
    check(!file_exists(path + ".tmp"), "gif " + name + " atomic write", "no .tmp left");
    if (out) *out = d;
}

int main(int argc, char** argv) {
    // child modes: bad input
    if (argc >= 2 && std::string(argv[1]) == "--bad-frame") {
        gif_write(DIR + "/bad.gif", {std::vector<uint8_t>(10)}, 4, 4, 10);
        return 0;
    }
    if (argc >= 2 && std::string(argv[1]) == "--bad-scale") {
        std::vector<float> clip(3 * 2 * 4 * 4);
        write_clip_gif(DIR + "/bad.gif", clip.data(), 3, 2, 4, 4, 0, 10);
        return 0;
    }
    make_parent_dirs(DIR + "/x");
    Rng r;
    rng_seed(&r, 2024);

    // the fixed palette: 256 entries, black first, every anti-aliasing level of every moving-shapes color
    const std::vector<uint8_t> pal = gif_fixed_palette();
    {
        std::set<uint32_t> distinct;
        for (int i = 0; i < 256; i++) distinct.insert(gif_rgb_key(&pal[3 * i]));
        bool levels = true;
        for (int c = 0; c < MS_NUM_COLORS; c++)
            for (int h = 0; h <= 16; h++) {
                uint8_t px[3];
                for (int ch = 0; ch < 3; ch++) px[ch] = clip_value_to_u8(MS_BACKGROUND[ch] + h / 16.0f * (MS_PALETTE[c][ch] - MS_BACKGROUND[ch]));
                levels = levels && distinct.count(gif_rgb_key(px));
            }
        check(pal.size() == 768 && pal[0] == 0 && pal[1] == 0 && pal[2] == 0 && levels, "fixed palette",
              str(distinct.size()) + " distinct colors; every 4x4 anti-aliasing level of the 7 colors is an entry");
    }

    // exact palette: <= 256 colors, odd sizes, a frame of one color, a 1x1 GIF
    {
        std::vector<uint8_t> colors;
        for (int i = 0; i < 200; i++) for (int c = 0; c < 3; c++) colors.push_back((uint8_t)(rng_u32(&r) & 0xff));
        auto f = random_frames(&r, 37, 23, 5, colors);
        roundtrip("exact_random", f, 37, 23, 7, GIF_PALETTE_AUTO, f);
        auto g = random_frames(&r, 13, 9, 3, {10, 20, 30});
        roundtrip("one_color", g, 13, 9, 100, GIF_PALETTE_AUTO, g);
        auto h = random_frames(&r, 1, 1, 2, {255, 0, 0, 0, 255, 0});
        roundtrip("one_pixel", h, 1, 1, 0, GIF_PALETTE_AUTO, h);
    }
    // exactly 256 colors (all in one frame), and a table that fills up: 256 colors of
    // noise over 300x200 px needs many clear codes and 12-bit codes
    {
        std::vector<uint8_t> colors;
        for (int i = 0; i < 256; i++) { colors.push_back((uint8_t)i); colors.push_back((uint8_t)(255 - i)); colors.push_back((uint8_t)(i * 7)); }
        auto f = random_frames(&r, 300, 200, 2, colors);
        GifDecoded d;
        roundtrip("noise_256", f, 300, 200, 4, GIF_PALETTE_AUTO, f, &d);
        check(d.clears > 4 && d.max_width == 12, "gif noise_256 exercises the full table", str(d.clears) + " clears, widest code " + str(d.max_width));
        // long runs: codes grow to 12 bits through long strings, few entries
        std::vector<std::vector<uint8_t>> runs(1, std::vector<uint8_t>((size_t)512 * 512 * 3, 0));
        for (size_t i = 0; i < runs[0].size() / 3; i++) if ((i / 1000) % 3 == 1) runs[0][3 * i] = 255;
        roundtrip("runs", runs, 512, 512, 4, GIF_PALETTE_AUTO, runs);
        // every table size from 258 to 600 entries at the end of the data (the width of the end code)
        bool all = true;
        std::string first_bad;
        for (int n = 1; n <= 700 && all; n += 1) {
            std::vector<std::vector<uint8_t>> fr(1, std::vector<uint8_t>((size_t)n * 3));
            for (int i = 0; i < n; i++) fr[0][3 * i] = (uint8_t)(rng_u32(&r) % 3);
            GifDecoded dd;
            std::string err, why;
            const bool ok = gif_decode(gif_encode(fr, n, 1, 1, GIF_PALETTE_AUTO), &dd, &err) && same_frames(dd, fr, &why);
            if (!ok) { all = false; first_bad = "width " + str(n) + ": " + err + why; }
        }
        check(all, "gif lengths 1..700 (every code-width change before the end code)", all ? "all exact" : first_bad);
    }
    // more than 256 colors: the fixed palette, exact for its own colors, nearest for others
    {
        auto f = random_frames(&r, 40, 30, 4, pal);
        roundtrip("fixed_palette_colors", f, 40, 30, 10, GIF_PALETTE_FIXED, f);
        std::vector<std::vector<uint8_t>> any(3, std::vector<uint8_t>((size_t)33 * 17 * 3));
        for (auto& fr : any) for (auto& x : fr) x = (uint8_t)(rng_u32(&r) & 0xff);
        std::vector<std::vector<uint8_t>> want = any;
        for (auto& fr : want)
            for (size_t i = 0; i < fr.size(); i += 3) {
                int best = 0;
                long bd = -1;
                for (int k = 0; k < 256; k++) {
                    long d = 0;
                    for (int c = 0; c < 3; c++) d += ((long)fr[i + c] - pal[3 * k + c]) * ((long)fr[i + c] - pal[3 * k + c]);
                    if (bd < 0 || d < bd) { bd = d; best = k; }
                }
                for (int c = 0; c < 3; c++) fr[i + c] = pal[3 * best + c];
            }
        roundtrip("any_colors_auto_to_fixed", any, 33, 17, 10, GIF_PALETTE_AUTO, want);
    }
    // a moving-shapes clip, scaled: exact in both palette modes
    MovingShapesConfig cfg;
    std::vector<std::vector<float>> clips;
    std::vector<const float*> ptrs;
    for (int i = 0; i < 3; i++) {
        MovingShapesClip c = moving_shapes_sample(cfg, 0, i);
        clips.emplace_back((size_t)3 * cfg.frames * cfg.size * cfg.size);
        moving_shapes_render(cfg, c, clips.back().data());
        ptrs.push_back(clips.back().data());
    }
    {
        const int scale = 3, S = cfg.size * scale;
        auto frames = clip_to_rgb_frames(clips[0].data(), 3, cfg.frames, cfg.size, cfg.size, scale);
        bool px_ok = true;
        for (int t = 0; t < cfg.frames; t++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++)
                    for (int c = 0; c < 3; c++) {
                        const float v = clips[0][(((size_t)c * cfg.frames + t) * cfg.size + y / scale) * cfg.size + x / scale];
                        const int want = (int)std::lround(std::min(255.0, std::max(0.0, (v + 1.0) * 127.5)));
                        px_ok = px_ok && frames[t][((size_t)y * S + x) * 3 + c] == want;
                    }
        check(px_ok, "clip_to_rgb_frames", "pixel (y, x) of frame t is clip value round((v + 1) * 127.5) at (y / scale, x / scale)");
        roundtrip("moving_shapes_auto", frames, S, S, 12, GIF_PALETTE_AUTO, frames);
        roundtrip("moving_shapes_fixed", frames, S, S, 12, GIF_PALETTE_FIXED, frames);
        write_clip_gif(DIR + "/clip.gif", clips[1].data(), 3, cfg.frames, cfg.size, cfg.size, 4, 12);
        GifDecoded d;
        std::string err, why;
        const bool ok = gif_decode(read_bytes(DIR + "/clip.gif"), &d, &err) &&
                        same_frames(d, clip_to_rgb_frames(clips[1].data(), 3, cfg.frames, cfg.size, cfg.size, 4), &why);
        check(ok, "write_clip_gif", ok ? "exact, " + str(d.frames.size()) + " frames of " + str(d.W) + "x" + str(d.H) : err + why);
    }
    // PNG grid: rows = clips, columns = frames, gray lines
    {
        const int scale = 2;
        const std::string path = DIR + "/nested/dir/grid.png";
        write_clip_grid_png(path, ptrs, 3, cfg.frames, cfg.size, cfg.size, scale);
        int W = 0, H = 0;
        std::vector<uint8_t> rgb;
        std::string err;
        const std::vector<uint8_t> bytes = read_bytes(path);
        const bool ok = png_decode(bytes, &W, &H, &rgb, &err);
        const int SW = cfg.size * scale + 1, n = (int)ptrs.size();
        check(ok && W == cfg.frames * SW + 1 && H == n * SW + 1, "png grid decodes",
              ok ? str(W) + "x" + str(H) + ", " + str(bytes.size()) + " bytes (raw " + str((size_t)W * H * 3) + ")" : err);
        if (ok) {
            bool same = true;
            std::string why;
            for (int y = 0; y < H && same; y++)
                for (int x = 0; x < W && same; x++) {
                    const int r_ = (y - 1) / SW, yy = (y - 1) % SW, t = (x - 1) / SW, xx = (x - 1) % SW;
                    const bool line = y == 0 || x == 0 || yy == SW - 1 || xx == SW - 1;
                    for (int c = 0; c < 3; c++) {
                        int want = 128;
                        if (!line) {
                            const float v = ptrs[r_][(((size_t)c * cfg.frames + t) * cfg.size + yy / scale) * cfg.size + xx / scale];
                            want = (int)std::lround(std::min(255.0, std::max(0.0, (v + 1.0) * 127.5)));
                        }
                        if (rgb[((size_t)y * W + x) * 3 + c] != want) {
                            same = false;
                            why = "pixel (" + str(x) + ", " + str(y) + ") channel " + str(c);
                        }
                    }
                }
            check(same, "png grid pixels", same ? "row = clip, column = frame, 1-px gray lines" : why);
        }
        check(!file_exists(path + ".tmp"), "png atomic write", "no .tmp left");
        // random picture (no runs to speak of), odd size
        std::vector<uint8_t> img((size_t)17 * 11 * 3);
        for (auto& x : img) x = (uint8_t)(rng_u32(&r) & 0xff);
        std::vector<uint8_t> back;
        const bool ok2 = png_decode(png_encode_rgb(img.data(), 17, 11), &W, &H, &back, &err) && W == 17 && H == 11 && back == img;
        check(ok2, "png random 17x11 round-trips", ok2 ? "exact" : err);
    }
    // bad input: one line naming the problem, exit 1
    child_err_path = DIR + "/child.err";
    check_fails_one_line("gif bad frame size", {"--bad-frame"}, "frame 0 has 10 bytes");
    check_fails_one_line("gif bad scale", {"--bad-scale"}, "scale must be in [1, 64]");
    printf("info: output in %s\n", DIR.c_str());
    return n_failed ? 1 : 0;
}

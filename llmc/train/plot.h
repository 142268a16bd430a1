// Loss curves as a self-contained SVG (no plotting library, no Python):
// train loss as a thin line, validation loss as dots joined by a thick line.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>
#include "../core/utils.h"

struct LossCurve {
    std::vector<std::pair<int, float>> train, val;
};

static void write_loss_svg(const LossCurve& c, const std::string& path, const std::string& title) {
    if (c.train.empty() && c.val.empty()) return;
    const double W = 800, H = 500, L = 70, R = 20, Tm = 40, Bm = 50;
    int xmax = 1;
    float ymin = INFINITY, ymax = -INFINITY;
    for (auto* s : {&c.train, &c.val})
        for (auto& p : *s) {
            if (!std::isfinite(p.second)) continue;
            xmax = std::max(xmax, p.first);
            ymin = std::min(ymin, p.second);
            ymax = std::max(ymax, p.second);
        }
    if (!(ymax > ymin)) { ymax = ymin + 1; }
    const float pad = 0.05f * (ymax - ymin);
    ymin -= pad; ymax += pad;
    auto X = [&](double x) { return L + (W - L - R) * x / xmax; };
    auto Y = [&](double y) { return Tm + (H - Tm - Bm) * (1 - (y - ymin) / (ymax - ymin)); };
    std::string tmp = path + ".tmp";
    make_parent_dirs(path);
    FILE* f = fopen_or_fail(tmp, "w");
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' font-family='sans-serif' font-size='12'>\n", W, H);
    fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n<text x='%g' y='24' font-size='15'>%s</text>\n", L, title.c_str());
    for (int k = 0; k <= 5; k++) {
        double yv = ymin + (ymax - ymin) * k / 5, xv = xmax * k / 5.0;
        fprintf(f, "<line x1='%g' y1='%g' x2='%g' y2='%g' stroke='#ddd'/><text x='%g' y='%g' text-anchor='end'>%.3f</text>\n",
                L, Y(yv), W - R, Y(yv), L - 6, Y(yv) + 4, yv);
        fprintf(f, "<text x='%g' y='%g' text-anchor='middle'>%.0f</text>\n", X(xv), H - Bm + 18, xv);
    }
    fprintf(f, "<text x='%g' y='%g' text-anchor='middle'>step</text>\n", (L + W - R) / 2, H - 12);
    fprintf(f, "<text x='16' y='%g' transform='rotate(-90 16 %g)' text-anchor='middle'>loss (nats/token)</text>\n", (Tm + H - Bm) / 2, (Tm + H - Bm) / 2);
    auto line = [&](const std::vector<std::pair<int, float>>& s, const char* color, double width) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='%g' points='", color, width);
        for (auto& p : s) if (std::isfinite(p.second)) fprintf(f, "%.1f,%.1f ", X(p.first), Y(p.second));
        fprintf(f, "'/>\n");
    };
    line(c.train, "#4a7fd4", 1);
    line(c.val, "#d4543a", 2.5);
    for (auto& p : c.val) if (std::isfinite(p.second)) fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='#d4543a'/>\n", X(p.first), Y(p.second));
    fprintf(f, "<text x='%g' y='%g' fill='#4a7fd4'>train</text><text x='%g' y='%g' fill='#d4543a'>val</text>\n",
            W - R - 90, Tm + 14, W - R - 45, Tm + 14);
    fprintf(f, "</svg>\n");
    if (fflush(f) != 0) fail("%s: write failed", tmp.c_str());
    fclose_or_fail(f, tmp);
    if (rename(tmp.c_str(), path.c_str()) != 0) fail("%s: rename failed (%s)", path.c_str(), strerror(errno));
}

// The DiT's two training objectives (docs/dit.md "Objectives"), host math
// shared by the trainer, the CPU reference and the tests.
// - rf: rectified flow (MUG-V): x_t = (1 - t) x0 + t eps, the network predicts
//   v = x0 - eps; its timestep embedder reads 1000 t (clean tokens: 0).
// - edm: Karras et al. 2022 (EDM), the objective of NVIDIA DFM's Megatron DiT:
//   x = x0 + sigma eps, the denoiser D(x) = c_skip x + c_out F(c_in x, c_noise)
//   with the preconditioning of the paper's Table 1 (sigma_data = sd):
//     c_skip = sd^2 / (sigma^2 + sd^2)     c_out = sigma sd / sqrt(sigma^2 + sd^2)
//     c_in   = 1 / sqrt(sigma^2 + sd^2)    c_noise = ln(sigma) / 4
//   loss lambda(sigma) ||D(x) - x0||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2,
//   training ln sigma ~ N(P_mean, P_std^2), and the deterministic Heun sampler on
//   sigma_i = (smax^(1/rho) + i/(N-1) (smin^(1/rho) - smax^(1/rho)))^rho, sigma_N = 0.
//   The network F is the DiT unchanged; its timestep embedder reads c_noise as it
//   is (DFM's EDMPipeline feeds c_noise to its sinusoidal Timesteps the same way).
//   Image-to-video clean frames are at sigma 0: their input is c_in(0) x0 = x0 / sd
//   and their conditioning rows read c_noise(sigma_min) (ln 0 is not finite).
// Coefficients are computed in double and used as float.
#pragma once
#include <cmath>
#include <string>
#include <vector>
#include "../core/rand.h"
#include "../core/utils.h"

enum DiTObjectiveKind { DIT_OBJECTIVE_RF = 0, DIT_OBJECTIVE_EDM = 1 };

struct DiTObjective {
    int kind = DIT_OBJECTIVE_RF;
    float sigma_data = 0.5f;                     // EDM's sigma_data
    float p_mean = -1.2f, p_std = 1.2f;          // training ln sigma ~ N(p_mean, p_std^2)
    float sigma_min = 0.002f, sigma_max = 80.0f; // the sampler's schedule ends
    float rho = 7.0f;                            // the schedule's exponent
};

static inline const char* dit_objective_name(int kind) { return kind == DIT_OBJECTIVE_EDM ? "edm" : "rf"; }

// "rf" or "edm" -> kind; anything else fails with one line naming the flag.
static inline int dit_objective_parse_or_fail(const std::string& s) {
    if (s == "rf") return DIT_OBJECTIVE_RF;
    if (s == "edm") return DIT_OBJECTIVE_EDM;
    fail("flag --objective: expected rf or edm, got '%s'", s.c_str());
    return -1;
}

static inline void dit_objective_check_or_fail(const DiTObjective& o) {
    if (o.kind != DIT_OBJECTIVE_EDM) return;
    if (!(o.sigma_data > 0) || !std::isfinite(o.sigma_data)) fail("flag --edm-sigma-data: must be > 0, got %g", o.sigma_data);
    if (!std::isfinite(o.p_mean)) fail("flag --edm-p-mean: must be finite, got %g", o.p_mean);
    if (!(o.p_std >= 0) || !std::isfinite(o.p_std)) fail("flag --edm-p-std: must be >= 0, got %g", o.p_std);
    if (!(o.sigma_min > 0) || !std::isfinite(o.sigma_min)) fail("flag --edm-sigma-min: must be > 0, got %g", o.sigma_min);
    if (!(o.sigma_max > o.sigma_min) || !std::isfinite(o.sigma_max))
        fail("flag --edm-sigma-max: must be finite and > --edm-sigma-min %g, got %g", o.sigma_min, o.sigma_max);
    if (!(o.rho > 0) || !std::isfinite(o.rho)) fail("flag --edm-rho: must be > 0, got %g", o.rho);
}

struct EdmPrecond {
    double c_skip, c_out, c_in, c_noise, weight;   // weight: lambda(sigma)
};

static inline EdmPrecond edm_precond(double sigma, double sd) {
    const double s2 = sigma * sigma + sd * sd, r = sqrt(s2);
    EdmPrecond p;
    p.c_skip = sd * sd / s2;
    p.c_out = sigma * sd / r;
    p.c_in = 1.0 / r;
    p.c_noise = 0.25 * log(sigma);
    p.weight = s2 / ((sigma * sd) * (sigma * sd));
    return p;
}

// The value the timestep embedder reads for a sample's noisy tokens (t: rf's flow
// time, edm's sigma), and for its clean tokens (image-to-video conditioning).
static inline double dit_timestep_value(const DiTObjective& o, float t) {
    return o.kind == DIT_OBJECTIVE_EDM ? 0.25 * log((double)t) : 1000.0 * (double)t;
}
static inline double dit_timestep_clean(const DiTObjective& o) {
    return o.kind == DIT_OBJECTIVE_EDM ? 0.25 * log((double)o.sigma_min) : 0.0;
}

// The network input of a sample: noisy frames in_x0 * x0 + in_eps * eps, clean
// frames in_clean * x0. rf: (1 - t, t, 1); edm: (c_in, c_in sigma, 1 / sd).
struct DiTInputCoef {
    float in_x0, in_eps, in_clean;
};
static inline DiTInputCoef dit_input_coef(const DiTObjective& o, float t) {
    if (o.kind != DIT_OBJECTIVE_EDM) return {1.0f - t, t, 1.0f};
    const EdmPrecond p = edm_precond(t, o.sigma_data);
    return {(float)p.c_in, (float)(p.c_in * t), (float)(1.0 / o.sigma_data)};
}

// Training noise level: ln sigma ~ N(p_mean, p_std^2), one normal draw.
static inline float edm_sample_sigma(Rng* rng, const DiTObjective& o) {
    return (float)exp((double)o.p_mean + (double)o.p_std * (double)rng_normal(rng));
}

// The sampler's steps + 1 noise levels, sigma_max down to sigma_min, then 0.
static inline std::vector<double> edm_sigma_steps(const DiTObjective& o, int steps) {
    std::vector<double> s;
    const double a = pow((double)o.sigma_max, 1.0 / o.rho), b = pow((double)o.sigma_min, 1.0 / o.rho);
    for (int i = 0; i < steps; i++) s.push_back(pow(a + (steps > 1 ? (double)i / (steps - 1) : 0.0) * (b - a), (double)o.rho));
    s.push_back(0.0);
    return s;
}

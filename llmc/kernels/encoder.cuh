// Token embedding: out[b,t,:] = wte[token[b,t], :].
// The backward is deterministic: instead of atomically adding each position's
// gradient into its token's row (order varies run to run), the host groups the
// positions by token (it has the tokens anyway) and one block per distinct token
// sums its positions in a fixed order.
#pragma once
#include <vector>
#include "../core/cuda_common.h"

__global__ static void encoder_forward_kernel(floatX* out, const int* tokens, const floatX* wte, int BT, int C) {
    const int chunks = C / x128::size;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= BT * chunks) return;
    const int bt = idx / chunks, c = (idx % chunks) * x128::size;
    store128(out + (size_t)bt * C + c, load128(wte + (size_t)tokens[bt] * C + c));
}

static void encoder_forward(floatX* out, const int* tokens, const floatX* wte, int BT, int C, cudaStream_t stream) {
    NVTX_RANGE_FN();
    const int n = BT * (C / x128::size);
    ProfileWork pw(0, (double)BT * C * 2 * sizeof(floatX));   // wte rows, out
    encoder_forward_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(out, tokens, wte, BT, C);
    cudaLaunchCheck();
}

// Host-side grouping of positions by token, built once per micro-batch.
struct EncoderBuckets {
    std::vector<int> bucket_token;   // distinct tokens, ascending
    std::vector<int> bucket_start;   // start of each bucket in positions (+1 sentinel)
    std::vector<int> positions;      // positions grouped by token, ascending within a bucket
};

static void encoder_make_buckets(EncoderBuckets* b, const int* tokens, int BT, int V) {
    std::vector<int> count(V + 1, 0);
    for (int i = 0; i < BT; i++) count[tokens[i] + 1]++;
    for (int v = 0; v < V; v++) count[v + 1] += count[v];
    b->positions.assign(BT, 0);
    std::vector<int> fill(count.begin(), count.end() - 1);
    for (int i = 0; i < BT; i++) b->positions[fill[tokens[i]]++] = i;
    b->bucket_token.clear();
    b->bucket_start.clear();
    for (int v = 0; v < V; v++) {
        if (count[v + 1] > count[v]) { b->bucket_token.push_back(v); b->bucket_start.push_back(count[v]); }
    }
    b->bucket_start.push_back(BT);
}

// grid: one block per distinct token; threads stride over C in 8-wide chunks.
__global__ static void encoder_backward_kernel(float* dwte, const floatX* dout, const int* bucket_token,
                                               const int* bucket_start, const int* positions, int C) {
    const int b = blockIdx.x;
    const int tok = bucket_token[b], p0 = bucket_start[b], p1 = bucket_start[b + 1];
    for (int c = threadIdx.x * x128::size; c < C; c += blockDim.x * x128::size) {
        float acc[x128::size] = {0};
        for (int p = p0; p < p1; p++) {
            x128 d = load128(dout + (size_t)positions[p] * C + c);
            for (int k = 0; k < x128::size; k++) acc[k] += (float)d[k];
        }
        float* dst = dwte + (size_t)tok * C + c;
        for (int k = 0; k < x128::size; k++) dst[k] += acc[k];
    }
}

// dev_ints: device scratch of at least 3*BT+1 ints for the bucket arrays.
static void encoder_backward(float* dwte, const floatX* dout, const EncoderBuckets& b, int* dev_ints, int BT, int C,
                             cudaStream_t stream) {
    NVTX_RANGE_FN();
    const int nb = (int)b.bucket_token.size();
    int* d_tok = dev_ints;
    int* d_start = dev_ints + BT;
    int* d_pos = dev_ints + 2 * BT + 1;
    cudaCheck(cudaMemcpyAsync(d_tok, b.bucket_token.data(), nb * sizeof(int), cudaMemcpyHostToDevice, stream));
    cudaCheck(cudaMemcpyAsync(d_start, b.bucket_start.data(), (nb + 1) * sizeof(int), cudaMemcpyHostToDevice, stream));
    cudaCheck(cudaMemcpyAsync(d_pos, b.positions.data(), BT * sizeof(int), cudaMemcpyHostToDevice, stream));
    // the host vectors must outlive the copies: they are pageable, so cudaMemcpyAsync
    // has staged them before returning
    const int threads = std::min(256, std::max(32, C / x128::size));
    ProfileWork pw(0, (double)BT * C * sizeof(floatX) + (double)nb * C * 8);   // dout; the distinct tokens' dwte rows read and written
    encoder_backward_kernel<<<nb, threads, 0, stream>>>(dwte, dout, d_tok, d_start, d_pos, C);
    cudaLaunchCheck();
}

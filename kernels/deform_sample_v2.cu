// Deformable sampling v2: reads the model's tensors as they are, writes pixel-major columns.
//
// Contract (same as edvr_vs.nn.dcn.sample_pixel_columns_torch, the pure-torch reference):
//   x       (B, C, H, W) stored channels-last: element (b, c, y, x) at x[((b*H + y)*W + x)*C + c],
//           C = G * CG
//   offset  any strided view: (dy, dx) of group g, kernel position k at channels (g*K + k)*2 + {0, 1},
//           element (b, ch, y, x) at offset[b*osb + ch*osc + y*osy + x*osx] (strides in elements)
//   logit   any strided view: the modulation *before* the sigmoid, channel g*K + k
//   cols    (B, HO*WO, K*C) row-major: cols[(b*P + p)*K*C + k*C + c] = sigmoid(logit) * bilinear
//           sample of channel c at kernel position k; cols.view(B*P, K*C) @ weight laid out as
//           (kh, kw, C, O) gives the convolution channels-last, in one GEMM for the whole batch.
// So the conv_offset output (B, 3*G*K, HO, WO) is read in place, channels-last or not: its first
// 2*G*K channels are the offsets, the last G*K the mask logits. No copies, no sigmoid pass.
// Sample positions follow torchvision: a sample at y <= -1, y >= H, x <= -1 or x >= W is zero;
// inside that band each of the four bilinear taps outside the image counts as zero.
//
// One thread per (image, output pixel, chunk of V channels), chunks fastest; it loops over the K
// kernel positions. Each tap is one V-element vector load (16 bytes for 8 fp16/bf16 or 4 fp32
// channels; V divides CG and the launcher checks 16-byte alignment), each column chunk one vector
// store, so a warp reads and writes whole contiguous lines. Storage fp32, fp16 or bf16; positions,
// weights, sigmoid and accumulation are fp32. No shared memory, no warp intrinsics: the tests also
// run this file on the CPU through a host-emulation header.

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

// Element <-> 32-bit word lanes (little-endian: element 0 is the low half of word 0).
__device__ __forceinline__ float dv_lane(const unsigned* w, int i, const float*) { return __uint_as_float(w[i]); }
__device__ __forceinline__ float dv_lane(const unsigned* w, int i, const __half*) {
    return __half2float(__ushort_as_half((unsigned short)(w[i >> 1] >> ((i & 1) * 16))));
}
__device__ __forceinline__ float dv_lane(const unsigned* w, int i, const __nv_bfloat16*) {
    return __bfloat162float(__ushort_as_bfloat16((unsigned short)(w[i >> 1] >> ((i & 1) * 16))));
}
__device__ __forceinline__ unsigned dv_bits(float v, const float*) { return __float_as_uint(v); }
__device__ __forceinline__ unsigned dv_bits(float v, const __half*) { return __half_as_ushort(__float2half_rn(v)); }
__device__ __forceinline__ unsigned dv_bits(float v, const __nv_bfloat16*) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
__device__ __forceinline__ float dv_scalar(const float* p) { return __ldg(p); }
__device__ __forceinline__ float dv_scalar(const __half* p) { return __half2float(__ldg(p)); }
__device__ __forceinline__ float dv_scalar(const __nv_bfloat16* p) { return __bfloat162float(__ldg(p)); }

// A vector of V elements of T as WORDS 32-bit words, loaded and stored with one instruction.
template <int WORDS> struct DvWords;
template <> struct DvWords<1> {
    static __device__ __forceinline__ void load(const void* p, unsigned* w) { w[0] = __ldg((const unsigned*)p); }
    static __device__ __forceinline__ void store(void* p, const unsigned* w) { *(unsigned*)p = w[0]; }
};
template <> struct DvWords<2> {
    static __device__ __forceinline__ void load(const void* p, unsigned* w) {
        const uint2 v = __ldg((const uint2*)p); w[0] = v.x; w[1] = v.y;
    }
    static __device__ __forceinline__ void store(void* p, const unsigned* w) { uint2 v; v.x = w[0]; v.y = w[1]; *(uint2*)p = v; }
};
template <> struct DvWords<4> {
    static __device__ __forceinline__ void load(const void* p, unsigned* w) {
        const uint4 v = __ldg((const uint4*)p); w[0] = v.x; w[1] = v.y; w[2] = v.z; w[3] = v.w;
    }
    static __device__ __forceinline__ void store(void* p, const unsigned* w) {
        uint4 v; v.x = w[0]; v.y = w[1]; v.z = w[2]; v.w = w[3]; *(uint4*)p = v;
    }
};

// acc[0..V) += weight * x[p .. p+V)
template <typename T, int V>
__device__ __forceinline__ void dv_accumulate(float* acc, const T* p, float weight) {
    if constexpr (V * sizeof(T) < 4) {  // a single fp16/bf16 channel
        acc[0] += weight * dv_scalar(p);
    } else {
        constexpr int WORDS = (int)(V * sizeof(T) / 4);
        unsigned w[WORDS];
        DvWords<WORDS>::load(p, w);
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] += weight * dv_lane(w, i, p);
    }
}

template <typename T, int V>
__device__ __forceinline__ void dv_store(T* p, const float* acc) {
    if constexpr (V * sizeof(T) < 4) {  // a single fp16/bf16 channel
        *(unsigned short*)p = (unsigned short)dv_bits(acc[0], p);
    } else {
        constexpr int WORDS = (int)(V * sizeof(T) / 4);
        unsigned w[WORDS];
#pragma unroll
        for (int j = 0; j < WORDS; ++j) {
            if constexpr (sizeof(T) == 4) w[j] = dv_bits(acc[j], p);
            else w[j] = dv_bits(acc[2 * j], p) | (dv_bits(acc[2 * j + 1], p) << 16);
        }
        DvWords<WORDS>::store(p, w);
    }
}

template <typename T, int V>
__device__ __forceinline__ void deform_sample_v2(
    const T* __restrict__ x, const T* __restrict__ offset, const T* __restrict__ logit, T* __restrict__ cols,
    int B, int H, int W, int C, int HO, int WO, int G, int KH, int KW,
    int SH, int SW, int PH, int PW, int DH, int DW,
    int osb, int osc, int osy, int osx, int msb, int msc, int msy, int msx)
{
    const int chunks = C / V;
    const long long P = (long long)HO * WO;
    const long long total = (long long)B * P * chunks;
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    const int c0 = (int)(index % chunks) * V;
    const long long bp = index / chunks;  // b * P + p
    const long long p = bp % P;
    const int b = (int)(bp / P);
    const int ho = (int)(p / WO), wo = (int)(p % WO);
    const int K = KH * KW;
    const int g = c0 / (C / G);

    const T* xb = x + (long long)b * H * W * C + c0;
    const T* ob = offset + (long long)b * osb + (long long)ho * osy + (long long)wo * osx;
    const T* mb = logit + (long long)b * msb + (long long)ho * msy + (long long)wo * msx;
    T* out = cols + bp * K * C + c0;

    for (int k = 0; k < K; ++k) {
        const int ki = k / KW, kj = k % KW;
        const long long ch = (long long)g * K + k;
        const float dy = dv_scalar(ob + (2 * ch) * osc);
        const float dx = dv_scalar(ob + (2 * ch + 1) * osc);
        const float m = 1.0f / (1.0f + expf(-dv_scalar(mb + ch * msc)));
        const float py = (float)(ho * SH - PH + ki * DH) + dy;
        const float px = (float)(wo * SW - PW + kj * DW) + dx;
        float acc[V];
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = 0.0f;
        if (py > -1.0f && py < (float)H && px > -1.0f && px < (float)W) {
            const float fy = floorf(py), fx = floorf(px);
            const int y0 = (int)fy, x0 = (int)fx;
            const float ly = py - fy, lx = px - fx, hy = 1.0f - ly, hx = 1.0f - lx;
            // Taps outside the image are not read (a NaN beside the image must not leak in).
            const bool top = y0 >= 0, bottom = y0 + 1 <= H - 1, left = x0 >= 0, right = x0 + 1 <= W - 1;
            const T* row0 = xb + ((long long)y0 * W + x0) * C;
            const T* row1 = row0 + (long long)W * C;
            if (top && left) dv_accumulate<T, V>(acc, row0, hy * hx);
            if (top && right) dv_accumulate<T, V>(acc, row0 + C, hy * lx);
            if (bottom && left) dv_accumulate<T, V>(acc, row1, ly * hx);
            if (bottom && right) dv_accumulate<T, V>(acc, row1 + C, ly * lx);
#pragma unroll
            for (int i = 0; i < V; ++i) acc[i] *= m;
        }
        dv_store<T, V>(out + (long long)k * C, acc);
    }
}

#define DV_ENTRY(NAME, T, V)                                                                          \
    extern "C" __global__ void NAME(                                                                  \
        const T* __restrict__ x, const T* __restrict__ offset, const T* __restrict__ logit,           \
        T* __restrict__ cols, int B, int H, int W, int C, int HO, int WO, int G, int KH, int KW,      \
        int SH, int SW, int PH, int PW, int DH, int DW,                                               \
        int osb, int osc, int osy, int osx, int msb, int msc, int msy, int msx)                       \
    {                                                                                                 \
        deform_sample_v2<T, V>(x, offset, logit, cols, B, H, W, C, HO, WO, G, KH, KW, SH, SW, PH, PW, \
                               DH, DW, osb, osc, osy, osx, msb, msc, msy, msx);                       \
    }

// Entry deform_sample_v2_<dtype>_v<V>: V channels per vector (V * sizeof(T) <= 16 bytes).
DV_ENTRY(deform_sample_v2_f32_v1, float, 1)
DV_ENTRY(deform_sample_v2_f32_v2, float, 2)
DV_ENTRY(deform_sample_v2_f32_v4, float, 4)
DV_ENTRY(deform_sample_v2_f16_v1, __half, 1)
DV_ENTRY(deform_sample_v2_f16_v2, __half, 2)
DV_ENTRY(deform_sample_v2_f16_v4, __half, 4)
DV_ENTRY(deform_sample_v2_f16_v8, __half, 8)
DV_ENTRY(deform_sample_v2_bf16_v1, __nv_bfloat16, 1)
DV_ENTRY(deform_sample_v2_bf16_v2, __nv_bfloat16, 2)
DV_ENTRY(deform_sample_v2_bf16_v4, __nv_bfloat16, 4)
DV_ENTRY(deform_sample_v2_bf16_v8, __nv_bfloat16, 8)

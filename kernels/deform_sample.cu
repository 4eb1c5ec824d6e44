// Deformable sampling for modulated deformable convolution (DCNv2).
//
// Contract (same as edvr_vs.nn.dcn.sample_columns_torch, the pure-torch reference):
//   x       (B, C, H, W)        input, C = G * CG
//   offset  (B, G*K*2, HO, WO)  (dy, dx) per group and kernel position, in pixels
//   mask    (B, G*K, HO, WO)    modulation (after the sigmoid)
//   cols    (B, C*K, HO*WO)     output (im2col): row c*K + k = mask * bilinear sample of
//                               channel c at kernel position k; weight.view(O, C*K) @ cols
// A sample at y <= -1, y >= H, x <= -1 or x >= W is zero; inside that band each of
// the four bilinear taps outside the image counts as zero (torchvision's rule).
//
// One thread per (image, group, output pixel), pixels fastest: it reads its K offsets
// and masks once and reuses the four tap weights across the group's CG channels.
// Neighbouring threads read neighbouring offsets, masks and (mostly) input pixels and
// write neighbouring columns, so global loads and stores coalesce.
// Storage is fp32, fp16 or bf16; all arithmetic is fp32. No shared memory, so the
// tests also run this file on the CPU through a host-emulation header.
//
// Tuning macros (defaults below): DS_UNROLL, channel loop unroll factor.

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif

#ifndef DS_UNROLL
#define DS_UNROLL 8
#endif

__device__ __forceinline__ float ds_load(const float* p) { return *p; }
__device__ __forceinline__ float ds_load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float ds_load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void ds_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void ds_store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void ds_store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename T>
__device__ __forceinline__ void deform_sample(
    const T* __restrict__ x, const T* __restrict__ offset, const T* __restrict__ mask, T* __restrict__ cols,
    int B, int H, int W, int C, int HO, int WO, int G, int KH, int KW,
    int SH, int SW, int PH, int PW, int DH, int DW)
{
    const long long P = (long long)HO * WO;
    const long long total = (long long)B * G * P;
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= total) return;
    const long long p = index % P;
    const int g = (int)((index / P) % G);
    const int b = (int)(index / (P * G));
    const int ho = (int)(p / WO);
    const int wo = (int)(p % WO);
    const int K = KH * KW;
    const int CG = C / G;

    const long long HW = (long long)H * W;
    const T* xb = x + ((long long)b * C + (long long)g * CG) * HW;
    const T* ob = offset + ((long long)b * G * K * 2 + (long long)g * K * 2) * P + p;
    const T* mb = mask + ((long long)b * G * K + (long long)g * K) * P + p;
    T* out = cols + ((long long)b * C + (long long)g * CG) * K * P + p;  // row (g*CG)*K, column p

    for (int k = 0; k < K; ++k) {
        const int ki = k / KW, kj = k % KW;
        const float dy = ds_load(ob + (2LL * k) * P);
        const float dx = ds_load(ob + (2LL * k + 1) * P);
        const float m = ds_load(mb + (long long)k * P);
        const float py = (float)(ho * SH - PH + ki * DH) + dy;
        const float px = (float)(wo * SW - PW + kj * DW) + dx;
        T* dst = out + (long long)k * P;  // row c*K + k for c = 0 is here; next channel K*P further

        if (!(py > -1.0f && py < (float)H && px > -1.0f && px < (float)W)) {
            for (int c = 0; c < CG; ++c) ds_store(dst + (long long)c * K * P, 0.0f);
            continue;
        }
        const float fy = floorf(py), fx = floorf(px);
        const int y0 = (int)fy, x0 = (int)fx;
        const float ly = py - fy, lx = px - fx, hy = 1.0f - ly, hx = 1.0f - lx;
        // Taps outside the image are not read and count as zero, exactly as in torchvision
        // (a NaN beside the image must not leak in). The flags are uniform across the channel loop.
        const bool top = y0 >= 0, bottom = y0 + 1 <= H - 1, left = x0 >= 0, right = x0 + 1 <= W - 1;
        const bool t00 = top && left, t01 = top && right, t10 = bottom && left, t11 = bottom && right;
        const float w00 = hy * hx, w01 = hy * lx, w10 = ly * hx, w11 = ly * lx;
        const long long i00 = (long long)y0 * W + x0;
#pragma unroll DS_UNROLL
        for (int c = 0; c < CG; ++c) {
            const T* xc = xb + c * HW;
            const float v = (t00 ? w00 * ds_load(xc + i00) : 0.0f) + (t01 ? w01 * ds_load(xc + i00 + 1) : 0.0f)
                          + (t10 ? w10 * ds_load(xc + i00 + W) : 0.0f)
                          + (t11 ? w11 * ds_load(xc + i00 + W + 1) : 0.0f);
            ds_store(dst + (long long)c * K * P, m * v);
        }
    }
}

#define DS_ENTRY(NAME, T)                                                                         \
    extern "C" __global__ void NAME(                                                              \
        const T* x, const T* offset, const T* mask, T* cols,                                      \
        int B, int H, int W, int C, int HO, int WO, int G, int KH, int KW,                       \
        int SH, int SW, int PH, int PW, int DH, int DW)                                           \
    {                                                                                             \
        deform_sample<T>(x, offset, mask, cols, B, H, W, C, HO, WO, G, KH, KW, SH, SW, PH, PW, DH, DW); \
    }

DS_ENTRY(deform_sample_f32, float)
DS_ENTRY(deform_sample_f16, __half)
DS_ENTRY(deform_sample_bf16, __nv_bfloat16)

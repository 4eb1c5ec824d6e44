// VapourSynth planes <-> normalised planar RGB, with zimg's (core.resize.Bilinear) arithmetic.
//
// Planes are contiguous (h, w) arrays; chroma planes are (h >> ssh, w >> ssw).
// Sample types: u8, u16 (8..16-bit integers), f16, f32. RGB tensors are (3, h, w), f32 or f16.
//
// Normalisation (integer, k = 2^(bits-8)):
//   limited range: Y = (v - 16k) / 219k,  C = (v - 128k) / 224k
//   full range:    Y = v / (2^bits - 1),  C = (v - 2^(bits-1)) / (2^bits - 1)
//   RGB input is full range (R, G, B like Y above). Float samples are used as they are.
// Matrix (Kr, Kb; Kg = 1 - Kr - Kb):
//   R = Y + 2(1-Kr) V,  B = Y + 2(1-Kb) U,  G = (Y - Kr R - Kb B) / Kg
//   Y = Kr R + Kg G + Kb B,  U = (B - Y) / 2(1-Kb),  V = (R - Y) / 2(1-Kr)
// Chroma resampling is bilinear with edge samples repeated beyond the border (zimg's rule):
//   upsampling: chroma sample i sits at luma position i*2^ss + shift, shift = 0 for left siting
//   horizontally (chromaloc 0) and 0.5 for centre siting (chromaloc 1, and always vertically
//   for 4:2:0), and each luma pixel interpolates the two nearest chroma samples;
//   downsampling: the triangle kernel widened by the factor (taps at distance < 2^ss,
//   weight 1 - d / 2^ss, normalised).
// Back-conversion rounds to nearest and clamps integers to [0, 2^bits - 1].
//
// One thread per output sample; no shared memory (the tests run this file on the CPU).

#if defined(__CUDACC_RTC__) || defined(__CUDACC__)
#include <cuda_fp16.h>
#endif

typedef unsigned char cv_u8;
typedef unsigned short cv_u16;

__device__ __forceinline__ float cv_load(const cv_u8* p) { return (float)*p; }
__device__ __forceinline__ float cv_load(const cv_u16* p) { return (float)*p; }
__device__ __forceinline__ float cv_load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float cv_load(const float* p) { return *p; }

__device__ __forceinline__ void cv_store(float* p, float v, float) { *p = v; }
__device__ __forceinline__ void cv_store(__half* p, float v, float) { *p = __float2half_rn(v); }
__device__ __forceinline__ void cv_store(cv_u8* p, float v, float maxval) {
    *p = (cv_u8)fminf(fmaxf(floorf(v + 0.5f), 0.0f), maxval);
}
__device__ __forceinline__ void cv_store(cv_u16* p, float v, float maxval) {
    *p = (cv_u16)fminf(fmaxf(floorf(v + 0.5f), 0.0f), maxval);
}

// Bilinear upsampling tap: chroma coordinate of luma position x, clamped indices and weight.
__device__ __forceinline__ void cv_up_taps(int x, int ss, float shift, int n, int* i0, int* i1, float* f) {
    const float c = ((float)x - shift) / (float)(1 << ss);
    const float fl = floorf(c);
    *f = c - fl;
    const int a = (int)fl;
    *i0 = a < 0 ? 0 : (a > n - 1 ? n - 1 : a);
    *i1 = a + 1 < 0 ? 0 : (a + 1 > n - 1 ? n - 1 : a + 1);
}

template <typename T>
__device__ __forceinline__ float cv_chroma_at(const T* plane, int cw, int chh, int x, int y,
                                              int ssw, int ssh, float shift_x, float shift_y)
{
    if (ssw == 0 && ssh == 0) return cv_load(plane + (long long)y * cw + x);
    int x0, x1, y0, y1;
    float fx, fy;
    if (ssw) cv_up_taps(x, ssw, shift_x, cw, &x0, &x1, &fx); else { x0 = x1 = x; fx = 0.0f; }
    if (ssh) cv_up_taps(y, ssh, shift_y, chh, &y0, &y1, &fy); else { y0 = y1 = y; fy = 0.0f; }
    const float a = cv_load(plane + (long long)y0 * cw + x0), b = cv_load(plane + (long long)y0 * cw + x1);
    const float c = cv_load(plane + (long long)y1 * cw + x0), d = cv_load(plane + (long long)y1 * cw + x1);
    // zimg resizes horizontally, then vertically.
    const float top = a + (b - a) * fx, bottom = c + (d - c) * fx;
    return top + (bottom - top) * fy;
}

// planes -> RGB. norm = {y_scale, y_offset, c_scale, c_offset}: value = (v - offset) * scale.
template <typename TI, typename TO>
__device__ __forceinline__ void cv_to_rgb(const TI* p0, const TI* p1, const TI* p2, TO* rgb,
    int w, int h, int ssw, int ssh, int is_yuv, float shift_x, float shift_y,
    float y_scale, float y_offset, float c_scale, float c_offset, float kr, float kb)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long n = (long long)w * h;
    if (idx >= n) return;
    const int x = (int)(idx % w), y = (int)(idx / w);
    if (!is_yuv) {
        cv_store(rgb + idx, (cv_load(p0 + idx) - y_offset) * y_scale, 0.0f);
        cv_store(rgb + n + idx, (cv_load(p1 + idx) - y_offset) * y_scale, 0.0f);
        cv_store(rgb + 2 * n + idx, (cv_load(p2 + idx) - y_offset) * y_scale, 0.0f);
        return;
    }
    const int cw = w >> ssw, chh = h >> ssh;
    const float Y = (cv_load(p0 + idx) - y_offset) * y_scale;
    // Normalise the chroma samples first (zimg converts depth before resizing).
    const float U = (cv_chroma_at(p1, cw, chh, x, y, ssw, ssh, shift_x, shift_y) - c_offset) * c_scale;
    const float V = (cv_chroma_at(p2, cw, chh, x, y, ssw, ssh, shift_x, shift_y) - c_offset) * c_scale;
    const float kg = 1.0f - kr - kb;
    const float R = Y + 2.0f * (1.0f - kr) * V;
    const float B = Y + 2.0f * (1.0f - kb) * U;
    const float G = (Y - kr * R - kb * B) / kg;
    cv_store(rgb + idx, R, 0.0f);
    cv_store(rgb + n + idx, G, 0.0f);
    cv_store(rgb + 2 * n + idx, B, 0.0f);
}

// RGB -> luma (or R, G, B for RGB output; or Y, U, V for 4:4:4). value = v * scale + offset.
template <typename TI, typename TO>
__device__ __forceinline__ void cv_from_rgb_luma(const TI* rgb, TO* p0, TO* p1, TO* p2,
    int w, int h, int ssw, int ssh, int is_yuv, float y_scale, float y_offset, float c_scale, float c_offset,
    float maxval, float kr, float kb)
{
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long n = (long long)w * h;
    if (idx >= n) return;
    const float R = cv_load(rgb + idx), G = cv_load(rgb + n + idx), B = cv_load(rgb + 2 * n + idx);
    if (!is_yuv) {
        cv_store(p0 + idx, R * y_scale + y_offset, maxval);
        cv_store(p1 + idx, G * y_scale + y_offset, maxval);
        cv_store(p2 + idx, B * y_scale + y_offset, maxval);
        return;
    }
    const float kg = 1.0f - kr - kb;
    const float Y = kr * R + kg * G + kb * B;
    cv_store(p0 + idx, Y * y_scale + y_offset, maxval);
    if (ssw == 0 && ssh == 0) {
        cv_store(p1 + idx, (B - Y) / (2.0f * (1.0f - kb)) * c_scale + c_offset, maxval);
        cv_store(p2 + idx, (R - Y) / (2.0f * (1.0f - kr)) * c_scale + c_offset, maxval);
    }
}

// RGB -> subsampled chroma: one thread per chroma sample, triangle filter over the RGB taps.
template <typename TI, typename TO>
__device__ __forceinline__ void cv_from_rgb_chroma(const TI* rgb, TO* p1, TO* p2,
    int w, int h, int ssw, int ssh, float shift_x, float shift_y, float c_scale, float c_offset,
    float maxval, float kr, float kb)
{
    const int cw = w >> ssw, chh = h >> ssh;
    const long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)cw * chh) return;
    const int cx = (int)(idx % cw), cy = (int)(idx / cw);
    const long long n = (long long)w * h;
    const float fw = (float)(1 << ssw), fh = (float)(1 << ssh);
    const float px = ssw ? cx * fw + shift_x : (float)cx;
    const float py = ssh ? cy * fh + shift_y : (float)cy;
    const int x_lo = ssw ? (int)floorf(px - fw) + 1 : cx, x_hi = ssw ? (int)ceilf(px + fw) - 1 : cx;
    const int y_lo = ssh ? (int)floorf(py - fh) + 1 : cy, y_hi = ssh ? (int)ceilf(py + fh) - 1 : cy;
    const float kg = 1.0f - kr - kb;
    float su = 0.0f, sv = 0.0f, sw = 0.0f;
    for (int ty = y_lo; ty <= y_hi; ++ty) {
        const float wy = ssh ? fmaxf(0.0f, 1.0f - fabsf((float)ty - py) / fh) : 1.0f;
        const int yy = ty < 0 ? 0 : (ty > h - 1 ? h - 1 : ty);
        for (int tx = x_lo; tx <= x_hi; ++tx) {
            const float wx = ssw ? fmaxf(0.0f, 1.0f - fabsf((float)tx - px) / fw) : 1.0f;
            const int xx = tx < 0 ? 0 : (tx > w - 1 ? w - 1 : tx);
            const long long i = (long long)yy * w + xx;
            const float R = cv_load(rgb + i), G = cv_load(rgb + n + i), B = cv_load(rgb + 2 * n + i);
            const float Y = kr * R + kg * G + kb * B;
            const float wt = wx * wy;
            su += wt * (B - Y);
            sv += wt * (R - Y);
            sw += wt;
        }
    }
    cv_store(p1 + idx, su / sw / (2.0f * (1.0f - kb)) * c_scale + c_offset, maxval);
    cv_store(p2 + idx, sv / sw / (2.0f * (1.0f - kr)) * c_scale + c_offset, maxval);
}

#define CV_TO_RGB(NAME, TI, TO)                                                                    \
    extern "C" __global__ void NAME(const TI* p0, const TI* p1, const TI* p2, TO* rgb,             \
        int w, int h, int ssw, int ssh, int is_yuv, float shift_x, float shift_y,                  \
        float y_scale, float y_offset, float c_scale, float c_offset, float kr, float kb)          \
    {                                                                                              \
        cv_to_rgb<TI, TO>(p0, p1, p2, rgb, w, h, ssw, ssh, is_yuv, shift_x, shift_y,               \
                          y_scale, y_offset, c_scale, c_offset, kr, kb);                           \
    }

#define CV_FROM_RGB(NAME, TI, TO)                                                                  \
    extern "C" __global__ void NAME##_luma(const TI* rgb, TO* p0, TO* p1, TO* p2,                  \
        int w, int h, int ssw, int ssh, int is_yuv, float y_scale, float y_offset,                 \
        float c_scale, float c_offset, float maxval, float kr, float kb)                           \
    {                                                                                              \
        cv_from_rgb_luma<TI, TO>(rgb, p0, p1, p2, w, h, ssw, ssh, is_yuv, y_scale, y_offset,       \
                                 c_scale, c_offset, maxval, kr, kb);                               \
    }                                                                                              \
    extern "C" __global__ void NAME##_chroma(const TI* rgb, TO* p1, TO* p2,                        \
        int w, int h, int ssw, int ssh, float shift_x, float shift_y, float c_scale,               \
        float c_offset, float maxval, float kr, float kb)                                          \
    {                                                                                              \
        cv_from_rgb_chroma<TI, TO>(rgb, p1, p2, w, h, ssw, ssh, shift_x, shift_y, c_scale,         \
                                   c_offset, maxval, kr, kb);                                      \
    }

CV_TO_RGB(planes_u8_to_rgb_f32, cv_u8, float)
CV_TO_RGB(planes_u16_to_rgb_f32, cv_u16, float)
CV_TO_RGB(planes_f16_to_rgb_f32, __half, float)
CV_TO_RGB(planes_f32_to_rgb_f32, float, float)
CV_TO_RGB(planes_u8_to_rgb_f16, cv_u8, __half)
CV_TO_RGB(planes_u16_to_rgb_f16, cv_u16, __half)
CV_TO_RGB(planes_f16_to_rgb_f16, __half, __half)
CV_TO_RGB(planes_f32_to_rgb_f16, float, __half)

CV_FROM_RGB(rgb_f32_to_planes_u8, float, cv_u8)
CV_FROM_RGB(rgb_f32_to_planes_u16, float, cv_u16)
CV_FROM_RGB(rgb_f32_to_planes_f16, float, __half)
CV_FROM_RGB(rgb_f32_to_planes_f32, float, float)
CV_FROM_RGB(rgb_f16_to_planes_u8, __half, cv_u8)
CV_FROM_RGB(rgb_f16_to_planes_u16, __half, cv_u16)
CV_FROM_RGB(rgb_f16_to_planes_f16, __half, __half)
CV_FROM_RGB(rgb_f16_to_planes_f32, __half, float)

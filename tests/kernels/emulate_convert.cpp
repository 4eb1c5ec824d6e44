// CPU build of kernels/convert.cu for the tests (loaded with ctypes).
#include "cuda_host.h"
#include "convert.cu"

#define HOST_TO_RGB(NAME, TI, TO)                                                                    \
    extern "C" void host_##NAME(unsigned blocks, unsigned threads, const void* p0, const void* p1,   \
                                const void* p2, void* rgb, const int* i, const float* f) {           \
        host_launch(NAME, blocks, threads, (const TI*)p0, (const TI*)p1, (const TI*)p2, (TO*)rgb,    \
                    i[0], i[1], i[2], i[3], i[4], f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);  \
    }

#define HOST_FROM_RGB(NAME, TI, TO)                                                                  \
    extern "C" void host_##NAME##_luma(unsigned blocks, unsigned threads, const void* rgb, void* p0,  \
                                       void* p1, void* p2, const int* i, const float* f) {           \
        host_launch(NAME##_luma, blocks, threads, (const TI*)rgb, (TO*)p0, (TO*)p1, (TO*)p2,         \
                    i[0], i[1], i[2], i[3], i[4], f[0], f[1], f[2], f[3], f[4], f[5], f[6]);        \
    }                                                                                                \
    extern "C" void host_##NAME##_chroma(unsigned blocks, unsigned threads, const void* rgb,         \
                                         void* p1, void* p2, const int* i, const float* f) {         \
        host_launch(NAME##_chroma, blocks, threads, (const TI*)rgb, (TO*)p1, (TO*)p2,                \
                    i[0], i[1], i[2], i[3], f[0], f[1], f[2], f[3], f[4], f[5], f[6]);              \
    }

HOST_TO_RGB(planes_u8_to_rgb_f32, cv_u8, float)
HOST_TO_RGB(planes_u16_to_rgb_f32, cv_u16, float)
HOST_TO_RGB(planes_f16_to_rgb_f32, __half, float)
HOST_TO_RGB(planes_f32_to_rgb_f32, float, float)
HOST_TO_RGB(planes_u8_to_rgb_f16, cv_u8, __half)
HOST_FROM_RGB(rgb_f32_to_planes_u8, float, cv_u8)
HOST_FROM_RGB(rgb_f32_to_planes_u16, float, cv_u16)
HOST_FROM_RGB(rgb_f32_to_planes_f16, float, __half)
HOST_FROM_RGB(rgb_f32_to_planes_f32, float, float)

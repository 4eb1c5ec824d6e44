// CPU build of kernels/deform_sample_v2.cu for the tests (loaded with ctypes).
#include "cuda_host.h"
#include "deform_sample_v2.cu"

#define HOST_ENTRY(NAME, T)                                                                       \
    extern "C" void host_##NAME(unsigned blocks, unsigned threads, const void* x, const void* o,    \
                                const void* m, void* cols, const int* s) {                        \
        host_launch(NAME, blocks, threads, (const T*)x, (const T*)o, (const T*)m, (T*)cols,         \
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],       \
                    s[12], s[13], s[14], s[15], s[16], s[17], s[18], s[19], s[20], s[21], s[22]);   \
    }

HOST_ENTRY(deform_sample_v2_f32_v1, float)
HOST_ENTRY(deform_sample_v2_f32_v2, float)
HOST_ENTRY(deform_sample_v2_f32_v4, float)
HOST_ENTRY(deform_sample_v2_f16_v1, __half)
HOST_ENTRY(deform_sample_v2_f16_v2, __half)
HOST_ENTRY(deform_sample_v2_f16_v4, __half)
HOST_ENTRY(deform_sample_v2_f16_v8, __half)
HOST_ENTRY(deform_sample_v2_bf16_v1, __nv_bfloat16)
HOST_ENTRY(deform_sample_v2_bf16_v2, __nv_bfloat16)
HOST_ENTRY(deform_sample_v2_bf16_v4, __nv_bfloat16)
HOST_ENTRY(deform_sample_v2_bf16_v8, __nv_bfloat16)

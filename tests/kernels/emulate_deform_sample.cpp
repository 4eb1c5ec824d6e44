// CPU build of kernels/deform_sample.cu for the tests (loaded with ctypes).
#include "cuda_host.h"
#include "deform_sample.cu"

#define HOST_ENTRY(NAME, T)                                                                    \
    extern "C" void host_##NAME(unsigned blocks, unsigned threads, const void* x, const void* o, \
                                const void* m, void* cols, const int* s) {                     \
        host_launch(NAME, blocks, threads, (const T*)x, (const T*)o, (const T*)m, (T*)cols,      \
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11],    \
                    s[12], s[13], s[14]);                                                       \
    }

HOST_ENTRY(deform_sample_f32, float)
HOST_ENTRY(deform_sample_f16, __half)
HOST_ENTRY(deform_sample_bf16, __nv_bfloat16)

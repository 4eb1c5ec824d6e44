// Host emulation of the CUDA built-ins our kernels use, so the same .cu source
// compiles with g++ and runs on the CPU: the launcher in emulate.cpp walks the grid
// as plain loops, one (block, thread) at a time. Enough for kernels that use no
// shared memory, no synchronisation and no warp intrinsics.
#pragma once
#include <math.h>
#include <cstdint>
#include <cstring>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__

struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;


// fp16: the compiler's IEEE binary16, round-to-nearest-even conversions.
struct __half { _Float16 v; };
inline float __half2float(__half h) { return (float)h.v; }
inline __half __float2half_rn(float f) { return __half{(_Float16)f}; }

// bf16: the top 16 bits of an IEEE float, round-to-nearest-even (NaN kept quiet).
struct __nv_bfloat16 { uint16_t bits; };
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.bits << 16; float f; std::memcpy(&f, &u, 4); return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u; std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}

// Bit casts and the read-only-cache load: plain memory here.
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
template <typename T> inline T __ldg(const T* p) { T v; std::memcpy(&v, p, sizeof(T)); return v; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline __half __ushort_as_half(unsigned short u) { __half h; std::memcpy(&h, &u, 2); return h; }
inline unsigned short __half_as_ushort(__half h) { unsigned short u; std::memcpy(&u, &h, 2); return u; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.bits; }

// Run kernel f over a 1-D grid exactly as a launch would, sequentially.
template <typename... P, typename... A>
void host_launch(void (*f)(P...), unsigned blocks, unsigned threads, A... args) {
    gridDim = dim3{blocks, 1, 1};
    blockDim = dim3{threads, 1, 1};
    for (unsigned b = 0; b < blocks; ++b)
        for (unsigned t = 0; t < threads; ++t) {
            blockIdx = dim3{b, 1, 1};
            threadIdx = dim3{t, 1, 1};
            f(args...);
        }
}

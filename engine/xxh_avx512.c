/* xxh_avx512.c — XXH3-128 compiled with xxHash's own AVX512 code path.
 *
 * The XXH3 value does not depend on which vector path computes it (xxHash
 * guarantees one result for all of them); Debian's libxxhash is built for
 * baseline x86-64, so tracing, which hashes every tensor an op writes, calls
 * this copy when the CPU has AVX512 (trace.c picks it at run time). Not here:
 * anything but that one function.
 */
#include "trace.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC target("avx512f")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX512
#include <xxhash.h>

sb_hash128 sb_xxh3_128_avx512(const void *data, size_t n) {
    XXH128_hash_t h = XXH3_128bits(data, n);
    return (sb_hash128){.lo = h.low64, .hi = h.high64};
}
#else
typedef int sb_xxh_avx512_unused; /* ISO C wants at least one declaration */
#endif

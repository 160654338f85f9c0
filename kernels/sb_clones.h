/* sb_clones.h — vector clones of the kernels' plain C loops (GCC builds one
 * copy per listed target and picks one by CPU at load time; the rest of the
 * build stays baseline x86-64).
 *
 * Each vector lane evaluates exactly the scalar expression written in the
 * loop: every add, multiply, divide and square root is correctly rounded in
 * SSE, AVX2 and AVX-512 alike, comparisons and selects are exact, and
 * -ffp-contract=off forbids fusing. So every clone gives the bits of the
 * plain scalar loop; only the speed differs. Loops that call libm (tanhf,
 * expf) stay scalar calls in every clone.
 *
 * SB_CLONES:     default, AVX2, AVX-512.
 * SB_FMA_CLONES: default, x86-64-v3 (AVX2 with FMA), AVX-512 — for loops
 *                with an explicit fmaf, which without FMA in the target is a
 *                libm call per element (correctly rounded either way).
 * SB_NO_CLONES turns both off. */
#ifndef SB_CLONES_H
#define SB_CLONES_H

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__) && !defined(SB_NO_CLONES)
#define SB_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#define SB_FMA_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "avx512f")))
#else
#define SB_CLONES
#define SB_FMA_CLONES
#endif

#endif /* SB_CLONES_H */

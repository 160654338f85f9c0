/* canonical_math_consts.h — the constants of sb_canon_expf (canonical_math.c)
 * that its array forms (canonical_math_x86.c) use too, bit for bit. Only
 * those two files include it. */
#ifndef SB_CANONICAL_MATH_CONSTS_H
#define SB_CANONICAL_MATH_CONSTS_H

#define LN2_HI 0x1.62e43p-1f   /* ln 2 rounded to float */
#define LN2_LO -0x1.05c61p-29f /* ln 2 - LN2_HI, rounded to float */
#define LOG2E 0x1.715476p+0f   /* 1/ln 2 rounded to float */
#define EXP_MAX 0x1.62e42ep+6f /* largest float x with exp(x) < FLT_MAX (88.72283) */
#define EXP_MIN -104.0f        /* below: exp(x) < 2^-150, rounds to +0 */
#define ROUND_MAGIC 0x1.8p23f  /* (z + M) - M rounds z to an integer, |z| < 2^22 */

#endif

/* diff.h — comparing two safetensors files tensor by tensor: bitwise, and by
 * tolerance (absolute, relative, ULP).
 *
 * ULP distance (documented in README "ULP distance"): each float is mapped to
 * a point on a signed integer line that is monotonic in the float's value:
 * non-negative floats map to their bit pattern, negative ones to minus the
 * bit pattern of their magnitude. So +0 and -0 both map to 0 (distance 0),
 * the distance across zero is the count of representable values between the
 * two (subnormals included), FLT_MAX and +Inf are 1 apart, and a NaN is
 * infinitely far (UINT64_MAX) from anything but another NaN. Two NaNs (any
 * payload) have distance 0 for tolerance checks; a bitwise check still sees
 * their bits.
 *
 * Agreement of one element under a tolerance: every criterion given must hold
 * — |a − b| ≤ atol + rtol·|b| when atol or rtol is given (numpy's allclose,
 * b being the second file / the reference), and ulp(a, b) ≤ ulp when ulp is
 * given. NaN agrees only with NaN; ±Inf only with the same Inf. With no
 * tolerance ("bitwise") an element agrees when its bytes are equal.
 *
 * Tensors that are not F32/F64 are compared bytewise whatever the tolerance.
 * A tensor present in only one file, or with a different dtype or shape, is a
 * disagreement.
 *
 * Details (harness/diff.c): a NULL tolerance, or one with no criterion
 * given, is bitwise. Relative error is |a − b| / |b| (0 when both are 0, +Inf
 * when only b is). A tensor in one file only, or with another dtype or shape,
 * gets numel = its (larger) element count, differing = mismatched = numel,
 * and no numeric stats. Tensor names longer than 255 bytes are cut.
 */
#ifndef SB_DIFF_H
#define SB_DIFF_H

#include "../engine/safetensors.h"

typedef struct sb_tolerance {
    int bitwise;            /* 1: bytes must be equal; the rest is ignored */
    int has_atol, has_rtol, has_ulp;
    double atol, rtol;
    uint64_t ulp;
} sb_tolerance;

/* Printable form: "bitwise" or "atol=1e-06 rtol=0 ulp=4" (only given fields). */
void sb_tolerance_str(const sb_tolerance *t, char *buf, size_t n);

uint64_t sb_ulp_distance_f32(float a, float b);
uint64_t sb_ulp_distance_f64(double a, double b);

typedef struct sb_tensor_diff {
    char name[256];
    int in_a, in_b;          /* present in file a / b */
    int same_dtype, same_shape;
    char dtype_a[16], dtype_b[16];
    uint64_t numel;
    int bitwise_equal;       /* bytes identical (and dtype, shape) */
    uint64_t differing;      /* elements whose bits differ */
    uint64_t mismatched;     /* elements that do not agree under the tolerance */
    double max_abs, max_rel; /* over finite pairs */
    uint64_t max_ulp;        /* UINT64_MAX when a NaN meets a non-NaN */
    uint64_t worst_index;    /* flat index of max_ulp (first if ties, preferring an element
                                whose bits differ, so ±0 or NaN payloads are found at 0 ULP);
                                bytewise tensors: the first differing element */
    double worst_a, worst_b; /* the values there (0 for bytewise tensors) */
    uint64_t nan_mismatch;   /* positions where exactly one side is NaN */
    uint64_t inf_mismatch;   /* positions where one side is ±Inf and the other is not the same
                                Inf (and neither is NaN: those count as nan_mismatch) */
    int within;              /* this tensor agrees under the tolerance */
} sb_tensor_diff;

typedef struct sb_file_diff {
    int n;                   /* union of tensor names, sorted by name */
    sb_tensor_diff *t;
    int bitwise_equal;       /* every tensor bitwise equal */
    int within;              /* every tensor within tolerance */
    uint64_t mismatched;     /* sum over tensors */
    uint64_t total;          /* sum of numel over all tensors (rows) */
    double max_abs, max_rel;
    uint64_t max_ulp;
    char worst_tensor[256];  /* tensor with the largest ULP distance (then abs, then differing
                                count) among those compared element by element that are not
                                bitwise equal; "" if none */
} sb_file_diff;

/* Compares two parsed files. out is filled (free with sb_file_diff_free). */
sb_status sb_diff_st(const sb_st_file *a, const sb_st_file *b, const sb_tolerance *tol,
                     sb_file_diff *out, sb_error *err);
/* Reads both files then sb_diff_st. */
sb_status sb_diff_files(const char *path_a, const char *path_b, const sb_tolerance *tol,
                        sb_file_diff *out, sb_error *err);
void sb_file_diff_free(sb_file_diff *d);

/* ---- subcommands (harness/cmd_diff.c, harness/cmd_inspect.c) ----
 * argv[0] is the subcommand name. Return the process exit code. */
int sb_cmd_diff(int argc, char **argv);
int sb_cmd_inspect(int argc, char **argv);

#endif /* SB_DIFF_H */

/* st_write_sample.c — writes one checkpoint with samebits' C writer for the
 * interop test (tests/interop.py), which reads it with the reference
 * `safetensors` package and checks every name, dtype, shape, metadata entry
 * and value. The values follow formulas both sides compute exactly:
 *
 *   layer.weight  F32  [3,4]  i * 0.25 - 1
 *   layer.bias    F64  [4]    1 / (i + 1)
 *   half          F16  [2,3]  i * 0.5
 *   counts        I64  [2,2]  i * 1000000007 - 2
 *   mask          U8   [5]    i % 2
 *   flags         BOOL [3]    1, 0, 1
 *   step          I32  []     42
 *   empty         F32  [0,3]  (no elements)
 *
 * Usage: st_write_sample OUT.safetensors (overwrites). Not a test by itself.
 */
#include "../engine/safetensors.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: st_write_sample OUT.safetensors\n");
        return 2;
    }
    float w[12];
    double b[4];
    int64_t counts[4];
    uint8_t mask[5], flags[3] = {1, 0, 1};
    int32_t step = 42;
    /* F16 bits of 0, 0.5, 1, 1.5, 2, 2.5 */
    uint16_t half[6] = {0x0000, 0x3800, 0x3c00, 0x3e00, 0x4000, 0x4100};
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 4; i++) b[i] = 1.0 / (double)(i + 1);
    for (int i = 0; i < 4; i++) counts[i] = (int64_t)i * 1000000007 - 2;
    for (int i = 0; i < 5; i++) mask[i] = (uint8_t)(i % 2);
    const int64_t s_w[2] = {3, 4}, s_b[1] = {4}, s_h[2] = {2, 3}, s_c[2] = {2, 2}, s_m[1] = {5},
                  s_f[1] = {3}, s_e[2] = {0, 3};
    sb_error err = {0};
    sb_st_writer *wr = sb_st_writer_new();
    int rc = 0;
    rc |= sb_st_writer_add(wr, "layer.weight", SB_DT_F32, 2, s_w, w, &err);
    rc |= sb_st_writer_add(wr, "layer.bias", SB_DT_F64, 1, s_b, b, &err);
    rc |= sb_st_writer_add(wr, "half", SB_DT_F16, 2, s_h, half, &err);
    rc |= sb_st_writer_add(wr, "counts", SB_DT_I64, 2, s_c, counts, &err);
    rc |= sb_st_writer_add(wr, "mask", SB_DT_U8, 1, s_m, mask, &err);
    rc |= sb_st_writer_add(wr, "flags", SB_DT_BOOL, 1, s_f, flags, &err);
    rc |= sb_st_writer_add(wr, "step", SB_DT_I32, 0, NULL, &step, &err);
    rc |= sb_st_writer_add(wr, "empty", SB_DT_F32, 2, s_e, NULL, &err);
    rc |= sb_st_writer_meta(wr, "producer", "samebits st_write_sample", &err);
    rc |= sb_st_writer_meta(wr, "format", "pt", &err);
    rc |= sb_st_writer_meta(wr, "note", "quote \" backslash \\ newline \n e-acute \xc3\xa9", &err);
    if (rc == 0) rc = sb_st_writer_save(wr, argv[1], 1, &err);
    sb_st_writer_free(wr);
    if (rc != 0) {
        fprintf(stderr, "st_write_sample: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* train_internal.h — the trainer's private layout, shared by train.c and
 * checkpoint.c only. Nothing outside engine/ includes this. */
#ifndef SB_TRAIN_INTERNAL_H
#define SB_TRAIN_INTERNAL_H

#include "engine.h"

typedef struct sb_param {
    char name[32];
    int ndim;
    int64_t shape[2];
    size_t offset, numel; /* view into the parameter buffer, in floats */
} sb_param;

struct sb_trainer {
    sb_run_config cfg;
    sb_backend *be;
    sb_dataset *data;
    int n_layers, n_params;
    sb_param params[2 * SB_MAX_LAYERS];
    size_t total;          /* floats in the parameter buffer */
    int n_slots;           /* optimizer state slots: 1 (SGD momentum) or 2 (Adam m, v) */
    float *param, *grad, *state;        /* backend memory */
    float *act[SB_MAX_LAYERS + 1];      /* backend memory, [batch, width] */
    float *pre[SB_MAX_LAYERS + 1];
    float *dz, *da;                     /* backend memory, [batch, max width] */
    int32_t *labels;                    /* backend memory, [batch] */
    float *loss;                        /* backend memory, 1 float */
    float *host_x;                      /* host staging for one batch */
    int32_t *host_y;
    int32_t *order;                     /* host: current epoch's sample order */
    int order_epoch;                    /* epoch whose order is in `order`, -1 none */
    int step;                           /* optimizer steps done */
};

#endif

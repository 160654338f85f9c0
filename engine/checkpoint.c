/* checkpoint.c — saving and restoring a trainer as a safetensors checkpoint.
 *
 * A checkpoint holds everything needed to continue: the parameters (under
 * their own names, so any safetensors reader sees the model), the optimizer
 * state ("optim.momentum.<name>" for SGD, "optim.m.<name>" and
 * "optim.v.<name>" for Adam) and, in __metadata__, the step and data position.
 * The data pipeline is a pure function of (seed, step), so the step is enough
 * to resume it; epoch and position are stored too for people and are checked
 * on restore.
 *
 * Not here: choosing paths or results folders (the harness does).
 */
#include "train_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define CKPT_FORMAT "checkpoint/1"

/* The parts of a run config that decide the numbers a checkpoint continues:
 * everything but steps and the execution settings (backend, mode, threads,
 * perturb), which a resumed run may change deliberately. */
static char *identity_json(const sb_run_config *c) {
    sb_run_config id = *c;
    id.steps = 1;
    memset(id.backend, 0, sizeof id.backend);
    id.mode = SB_MODE_DETERMINISTIC;
    id.threads = 1;
    id.perturb = 0;
    id.trace = 0;
    id.recheck = 0;
    id.data.loader_workers = 0;
    id.data.loader_completion = 0;
    return sb_run_config_to_json(&id);
}

static void slot_names(const sb_trainer *t, const char **names) {
    if (t->n_slots == 2) {
        names[0] = "m";
        names[1] = "v";
    } else {
        names[0] = "momentum";
    }
}

sb_status sb_trainer_save(const sb_trainer *t, const char *path, int overwrite, int n_extra,
                          const char *const *extra_keys, const char *const *extra_vals,
                          sb_error *err) {
    sb_status st = SB_ERR_NOMEM;
    float *host = malloc((size_t)(1 + t->n_slots) * t->total * sizeof(float));
    char *cfg = sb_run_config_to_json(&t->cfg), *ident = identity_json(&t->cfg);
    sb_st_writer *w = sb_st_writer_new();
    char names[2 * SB_MAX_PARAMS][80];
    if (!host || !cfg || !ident || !w) {
        sb_error_set(err, SB_ERR_NOMEM, "%s: out of memory writing checkpoint", path);
        goto done;
    }
    t->be->i->download(t->be, host, t->param, t->total * sizeof(float));
    t->be->i->download(t->be, host + t->total, t->state,
                       (size_t)t->n_slots * t->total * sizeof(float));
    for (int p = 0; p < t->n_params; p++) {
        const sb_param *pp = &t->params[p];
        st = sb_st_writer_add(w, pp->name, SB_DT_F32, pp->ndim, pp->shape, host + pp->offset, err);
        if (st != SB_OK) goto done;
    }
    const char *slots[2];
    slot_names(t, slots);
    int k = 0;
    for (int s = 0; s < t->n_slots; s++) {
        for (int p = 0; p < t->n_params; p++, k++) {
            const sb_param *pp = &t->params[p];
            snprintf(names[k], sizeof names[k], "optim.%s.%s", slots[s], pp->name);
            st = sb_st_writer_add(w, names[k], SB_DT_F32, pp->ndim, pp->shape,
                                  host + (size_t)(1 + s) * t->total + pp->offset, err);
            if (st != SB_OK) goto done;
        }
    }
    uint64_t pos = (uint64_t)t->step * (uint64_t)t->cfg.batch;
    char step[32], epoch[32], position[32];
    snprintf(step, sizeof step, "%d", t->step);
    snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)(pos / (uint64_t)t->cfg.data.samples));
    snprintf(position, sizeof position, "%llu",
             (unsigned long long)(pos % (uint64_t)t->cfg.data.samples));
    const char *keys[] = {"samebits.format", "samebits.step", "samebits.epoch",
                          "samebits.position", "samebits.config", "samebits.identity"};
    const char *vals[] = {CKPT_FORMAT, step, epoch, position, cfg, ident};
    for (int i = 0; i < 6; i++)
        if ((st = sb_st_writer_meta(w, keys[i], vals[i], err)) != SB_OK) goto done;
    for (int i = 0; i < n_extra; i++)
        if ((st = sb_st_writer_meta(w, extra_keys[i], extra_vals[i], err)) != SB_OK) goto done;
    st = sb_st_writer_save(w, path, overwrite, err);
done:
    sb_st_writer_free(w);
    free(host);
    free(cfg);
    free(ident);
    return st;
}

/* Strict decimal integer in [0, max]. */
static int parse_count(const char *s, long long max, long long *out) {
    if (!s || !*s) return -1;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > max) return -1;
    }
    *out = v;
    return 0;
}

static sb_status copy_tensor(sb_trainer *t, const sb_st_file *f, const char *name,
                             const sb_param *pp, float *dst, sb_error *err) {
    const sb_st_tensor *x = sb_st_find(f, name);
    if (!x) return sb_error_set(err, SB_ERR_FORMAT, "%s: tensor \"%s\" is missing", f->path, name);
    if (x->dtype != SB_DT_F32)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: tensor \"%s\": dtype %s, expected F32",
                            f->path, name, sb_dtype_name(x->dtype));
    int same = x->ndim == pp->ndim;
    for (int d = 0; same && d < pp->ndim; d++) same = x->shape[d] == pp->shape[d];
    if (!same)
        return sb_error_set(err, SB_ERR_FORMAT, "%s: tensor \"%s\": shape differs from the model's",
                            f->path, name);
    t->be->i->upload(t->be, dst, x->data, pp->numel * sizeof(float));
    return SB_OK;
}

sb_status sb_trainer_restore(sb_trainer *t, const char *path, sb_error *err) {
    sb_st_file *f = sb_st_read(path, err);
    char *ident = NULL;
    sb_status st = SB_ERR_FORMAT;
    if (!f) return err ? err->status : SB_ERR_FORMAT;
    const char *fmt = sb_st_meta(f, "samebits.format");
    if (!fmt || strcmp(fmt, CKPT_FORMAT) != 0) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: __metadata__.samebits.format: expected \"%s\"", path,
                     CKPT_FORMAT);
        goto done;
    }
    ident = identity_json(&t->cfg);
    const char *stored = sb_st_meta(f, "samebits.identity");
    if (!ident || !stored || strcmp(stored, ident) != 0) {
        sb_error_set(err, SB_ERR_ARG,
                     "%s: written by a run with a different model, data, optimizer, batch or seed",
                     path);
        st = SB_ERR_ARG;
        goto done;
    }
    long long step, epoch, position;
    if (parse_count(sb_st_meta(f, "samebits.step"), 1000000000LL, &step) != 0) {
        sb_error_set(err, SB_ERR_FORMAT, "%s: __metadata__.samebits.step: expected an integer", path);
        goto done;
    }
    uint64_t pos = (uint64_t)step * (uint64_t)t->cfg.batch;
    if (parse_count(sb_st_meta(f, "samebits.epoch"), 1LL << 62, &epoch) != 0 ||
        parse_count(sb_st_meta(f, "samebits.position"), 1LL << 62, &position) != 0 ||
        (uint64_t)epoch != pos / (uint64_t)t->cfg.data.samples ||
        (uint64_t)position != pos % (uint64_t)t->cfg.data.samples) {
        sb_error_set(err, SB_ERR_FORMAT,
                     "%s: __metadata__: samebits.epoch/position do not match step %lld", path, step);
        goto done;
    }
    const char *slots[2];
    slot_names(t, slots);
    for (int p = 0; p < t->n_params; p++) {
        const sb_param *pp = &t->params[p];
        if ((st = copy_tensor(t, f, pp->name, pp, t->param + pp->offset, err)) != SB_OK) goto done;
        for (int s = 0; s < t->n_slots; s++) {
            char name[80];
            snprintf(name, sizeof name, "optim.%s.%s", slots[s], pp->name);
            st = copy_tensor(t, f, name, pp, t->state + (size_t)s * t->total + pp->offset, err);
            if (st != SB_OK) goto done;
        }
    }
    t->step = (int)step;
    t->order_epoch = -1;
    t->border_epoch = -1;
    t->traced_epoch = -1;
    t->n_cache = 0; /* every tensor was rewritten: no cached hash is valid */
    st = SB_OK;
done:
    free(ident);
    sb_st_free(f);
    return st;
}

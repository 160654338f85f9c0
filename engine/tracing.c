/* tracing.c — running one op with tracing and recheck (DESIGN.md §4).
 *
 * sb_exec_op wraps every op of the training step. With tracing on it hashes
 * the op's inputs and outputs (sb_hash_tensor: XXH3-128, per 64 KiB chunk for
 * larger tensors) and emits one record with cheap stats; at snapshot steps
 * (1, 2, 4, 8, … and the last) the output values are stored too. An op's
 * outputs are hashed and measured in one pass right after it ran, their
 * chunks spread over the backend's threads when it has a pool (the values
 * never depend on that). Hashes are cached per tensor view: a view's hash is
 * computed when an op writes it and reused when later ops read it, so each
 * byte is hashed once per write, not once per use.
 *
 * Recheck runs the op a second time on the same inputs: the outputs are saved,
 * restored to what they were before the op (ops may add into their outputs),
 * the op runs again (streams left unseeded draw fresh entropy, as a new
 * process would), and when the two results differ the record is flagged
 * SB_TRACE_RECHECK_DIFFERS. The first execution's results are kept.
 *
 * Tensors are read through host pointers: right for the ref and blas
 * backends, whose memory is host memory; a device backend will download here.
 *
 * Not here: the ops themselves (train.c), the file format (trace.c).
 */
#include "train_internal.h"

#include <math.h>
#include <string.h>

#define SB_TRACE_VALUES_MAX 16384 /* floats: 64 KiB per op output at a snapshot step */

int sb_is_snapshot_step(const sb_trainer *t, int step) {
    if (step == t->cfg.steps) return 1;
    return step > 0 && (step & (step - 1)) == 0;
}

static int overlaps(const void *a, size_t na, const void *b, size_t nb) {
    const char *pa = a, *pb = b;
    return pa < pb + nb && pb < pa + na;
}

static void cache_put(sb_trainer *t, const sb_view *v, sb_hash128 h) {
    for (int i = 0; i < t->n_cache; i++)
        if (t->cache[i].p == v->p && t->cache[i].bytes == v->bytes) {
            t->cache[i].h = h;
            return;
        }
    if (t->n_cache == SB_HASH_CACHE) { /* full: drop the oldest half */
        memmove(t->cache, t->cache + SB_HASH_CACHE / 2,
                (SB_HASH_CACHE / 2) * sizeof t->cache[0]);
        t->n_cache = SB_HASH_CACHE / 2;
    }
    t->cache[t->n_cache].p = v->p;
    t->cache[t->n_cache].bytes = v->bytes;
    t->cache[t->n_cache].h = h;
    t->n_cache++;
}

static sb_hash128 view_hash(sb_trainer *t, const sb_view *v) {
    for (int i = 0; i < t->n_cache; i++)
        if (t->cache[i].p == v->p && t->cache[i].bytes == v->bytes) return t->cache[i].h;
    sb_hash128 h = sb_hash_tensor(v->p, v->bytes);
    t->hashed_bytes += v->bytes;
    cache_put(t, v, h);
    return h;
}

/* An op wrote v: forget every cached view that overlaps it. */
static void invalidate(sb_trainer *t, const sb_view *v) {
    int k = 0;
    for (int i = 0; i < t->n_cache; i++)
        if (!overlaps(t->cache[i].p, t->cache[i].bytes, v->p, v->bytes)) t->cache[k++] = t->cache[i];
    t->n_cache = k;
}

void sb_cache_alias(sb_trainer *t, const sb_view *dst, const sb_view *src) {
    invalidate(t, dst);
    if (!t->tw && !t->cfg.recheck) return;
    for (int i = 0; i < t->n_cache; i++)
        if (t->cache[i].p == src->p && t->cache[i].bytes == src->bytes) {
            sb_hash128 h = t->cache[i].h;
            if (t->n_cache == SB_HASH_CACHE) return; /* full: dst will be hashed when read */
            t->cache[t->n_cache++] = (sb_hash_entry){dst->p, dst->bytes, h};
            return;
        }
}

static int ensure_scratch(sb_trainer *t, size_t bytes) {
    if (bytes <= t->scratch_cap) return 0;
    void *a = realloc(t->scratch, bytes), *b = NULL;
    if (a) t->scratch = a;
    b = realloc(t->scratch2, bytes);
    if (b) t->scratch2 = b;
    if (!a || !b) return -1;
    t->scratch_cap = bytes;
    return 0;
}

/* everything the op writes: its outputs, then its side outputs */
static const sb_view *written(const sb_opspec *o, int i) {
    return i < o->n_out ? &o->out[i] : &o->side[i - o->n_out];
}

static void save_outputs(const sb_opspec *o, void *dst) {
    char *d = dst;
    for (int i = 0; i < o->n_out + o->n_side; i++) {
        memcpy(d, written(o, i)->p, written(o, i)->bytes);
        d += written(o, i)->bytes;
    }
}

static void restore_outputs(const sb_opspec *o, const void *src) {
    const char *s = src;
    for (int i = 0; i < o->n_out + o->n_side; i++) {
        memcpy((void *)written(o, i)->p, s, written(o, i)->bytes);
        s += written(o, i)->bytes;
    }
}

static sb_hash128 outputs_hash(sb_trainer *t, const sb_opspec *o, int use_cache) {
    sb_hash128 h[SB_OP_MAX_IO];
    for (int i = 0; i < o->n_out; i++) {
        if (use_cache) {
            h[i] = view_hash(t, &o->out[i]);
        } else {
            h[i] = sb_hash_tensor(o->out[i].p, o->out[i].bytes);
            t->hashed_bytes += o->out[i].bytes;
        }
    }
    return o->n_out == 1 ? h[0] : sb_hash_combine(h, o->n_out);
}

/* sb_fork_join over the backend's own threads (tracing's hashes between ops) */
static void host_run(void *be, void (*fn)(void *, int, int), void *arg) {
    ((sb_backend *)be)->i->host_parallel(be, fn, arg);
}

void sb_exec_op(sb_trainer *t, sb_opspec *o, void (*fn)(sb_trainer *, void *), void *arg) {
    int tracing = t->tw != NULL;
    if (!tracing && !t->cfg.recheck) {
        fn(t, arg);
        return;
    }
    sb_trace_record rec;
    memset(&rec, 0, sizeof rec);
    sb_hash128 hin[SB_OP_MAX_IO];
    for (int i = 0; i < o->n_in; i++) hin[i] = view_hash(t, &o->in[i]);
    if (o->n_in == 1)
        rec.in = hin[0];
    else if (o->n_in > 1)
        rec.in = sb_hash_combine(hin, o->n_in);

    size_t out_bytes = 0;
    for (int i = 0; i < o->n_out + o->n_side; i++) out_bytes += written(o, i)->bytes;
    int rechecked = 0;
    if (t->cfg.recheck && ensure_scratch(t, out_bytes) == 0) {
        save_outputs(o, t->scratch);           /* the outputs before the op */
        fn(t, arg);
        sb_hash128 h1 = outputs_hash(t, o, 0);
        save_outputs(o, t->scratch2);          /* the first execution's results */
        restore_outputs(o, t->scratch);
        t->recheck_pass = 1;
        fn(t, arg);
        t->recheck_pass = 0;
        sb_hash128 h2 = outputs_hash(t, o, 0);
        restore_outputs(o, t->scratch2);       /* keep the first execution's results */
        if (!sb_hash_equal(h1, h2)) {
            rec.flags |= SB_TRACE_RECHECK_DIFFERS;
            t->recheck_flags++;
        }
        rechecked = 1;
    }
    if (!rechecked) fn(t, arg);
    for (int i = 0; i < o->n_out + o->n_side; i++) invalidate(t, written(o, i));
    if (!tracing) return;

    rec.step = (uint32_t)(o->stage == SB_STAGE_INIT || o->stage == SB_STAGE_DATA_SOURCE ? 0 : t->step + 1);
    rec.stage = (uint16_t)o->stage;
    rec.op = o->id;
    /* every output: its hash (and for float outputs its stats) in one pass,
     * large tensors chunk by chunk on the backend's threads; the hashes are
     * then cached for the ops that read them */
    sb_digest d[SB_OP_MAX_IO];
    for (int i = 0; i < o->n_out; i++)
        d[i] = (sb_digest){.p = o->out[i].p, .bytes = o->out[i].bytes,
                           .is_float = o->out[i].is_float};
    for (int i = 0; i < o->n_out; i++) t->hashed_bytes += d[i].bytes;
    if (t->be->i->host_parallel)
        sb_digest_tensors(d, o->n_out, host_run, t->be, t->be->threads);
    else
        sb_digest_tensors(d, o->n_out, NULL, NULL, 1);
    double sumsq = 0.0;
    float maxabs = 0.0f;
    size_t nfl = 0;
    int n_float = 0, last_float = -1;
    sb_hash128 hout[SB_OP_MAX_IO];
    for (int i = 0; i < o->n_out; i++) {
        hout[i] = d[i].h;
        cache_put(t, &o->out[i], d[i].h);
        if (!o->out[i].is_float) continue;
        sumsq += d[i].sumsq;
        if (isnan(d[i].maxabs) || isnan(maxabs))
            maxabs = NAN;
        else if (d[i].maxabs > maxabs)
            maxabs = d[i].maxabs;
        nfl += o->out[i].bytes / sizeof(float);
        n_float++;
        last_float = i;
    }
    rec.out = o->n_out == 1 ? hout[0] : sb_hash_combine(hout, o->n_out);
    rec.n_out = (uint32_t)(nfl > UINT32_MAX ? UINT32_MAX : nfl);
    rec.out_l2 = (float)sqrt(sumsq);
    rec.out_maxabs = maxabs;
    const float *values = NULL;
    /* values at snapshot steps: the optimizer's outputs (the weights: what
     * "growth" is computed from, up to 4 Mi floats) and every other op output
     * of at most SB_TRACE_VALUES_MAX floats (what per-op errors are computed
     * from). Larger activations and data batches keep only their hashes and
     * stats, so traces — and the baselines that keep them — stay small. One
     * float output is handed over as it is (the writer copies it); several
     * are gathered first. */
    size_t cap = o->stage == SB_STAGE_OPTIMIZER ? (4u << 20) : SB_TRACE_VALUES_MAX;
    if (sb_is_snapshot_step(t, (int)rec.step) && nfl > 0 && nfl <= cap) {
        if (n_float == 1) {
            values = o->out[last_float].p;
        } else if (ensure_scratch(t, nfl * sizeof(float)) == 0) {
            char *dst = t->scratch;
            for (int i = 0; i < o->n_out; i++)
                if (o->out[i].is_float) {
                    memcpy(dst, o->out[i].p, o->out[i].bytes);
                    dst += o->out[i].bytes;
                }
            values = t->scratch;
        }
    }
    sb_trace_emit(t->tw, &rec, values);
}

void sb_run_op(sb_trainer *t, const char *name, sb_stage stage, int n_in, const sb_view *in,
               int n_out, const sb_view *out, int n_side, const sb_view *side,
               void (*fn)(sb_trainer *, void *), void *arg) {
    if (!t->tw && !t->cfg.recheck) { /* untraced: just the op */
        fn(t, arg);
        return;
    }
    sb_opspec o; /* ~6 KB of view slots: only the used ones are set */
    o.id = t->tw ? sb_trace_op(t->tw, name, stage) : 0;
    o.stage = stage;
    o.n_in = n_in;
    o.n_out = n_out;
    for (int i = 0; i < n_in; i++) o.in[i] = in[i];
    for (int i = 0; i < n_out; i++) o.out[i] = out[i];
    o.n_side = n_side;
    for (int i = 0; i < n_side; i++) o.side[i] = side[i];
    sb_exec_op(t, &o, fn, arg);
}

/* ---- step 0: the dataset and the initial (or restored) parameters ---- */

static void nop(sb_trainer *t, void *arg) {
    (void)t;
    (void)arg;
}

void sb_trace_step0(sb_trainer *t) {
    sb_opspec o;
    memset(&o, 0, sizeof o);
    o.id = sb_trace_op(t->tw, "data/source", SB_STAGE_DATA_SOURCE);
    o.stage = SB_STAGE_DATA_SOURCE;
    o.n_out = 2;
    size_t n = (size_t)t->data->samples;
    o.out[0] = (sb_view){t->data->x, n * (size_t)t->data->features * sizeof(float), 1};
    o.out[1] = (sb_view){t->data->y, n * sizeof(int32_t), 0};
    int recheck = t->cfg.recheck;
    t->cfg.recheck = 0; /* the state already exists: nothing to execute twice */
    sb_exec_op(t, &o, nop, NULL);
    for (int p = 0; p < t->n_params; p++) {
        char name[48];
        snprintf(name, sizeof name, "init/%s", t->params[p].name);
        memset(&o, 0, sizeof o);
        o.id = sb_trace_op(t->tw, name, SB_STAGE_INIT);
        o.stage = SB_STAGE_INIT;
        o.n_out = 1;
        o.out[0] = (sb_view){t->param + t->params[p].offset, t->params[p].numel * sizeof(float), 1};
        sb_exec_op(t, &o, nop, NULL);
    }
    t->cfg.recheck = recheck;
}

sb_status sb_trainer_trace_open(sb_trainer *t, const char *path, sb_error *err) {
    if (t->tw) return sb_error_set(err, SB_ERR_ARG, "%s: a trace is already open", path);
    t->tw = sb_trace_writer_new(path, err);
    if (!t->tw) return err ? err->status : SB_ERR_IO;
    t->n_cache = 0;
    sb_trace_step0(t);
    return SB_OK;
}

sb_status sb_trainer_trace_close(sb_trainer *t, const char *run_json, sb_error *err) {
    if (!t->tw) return SB_OK;
    sb_status st = sb_trace_writer_close(t->tw, run_json, err);
    t->tw = NULL;
    return st;
}

int sb_trainer_recheck_flags(const sb_trainer *t) { return t->recheck_flags; }

uint64_t sb_trainer_hashed_bytes(const sb_trainer *t) { return t->hashed_bytes; }

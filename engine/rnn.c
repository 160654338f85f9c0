/* rnn.c — the reference recurrent net: its parameter table, its buffers and
 * the model ops of one training step.
 *
 * Model (PyTorch's names and layouts, so a checkpoint loads into torch.nn
 * modules directly), on token data (data.kind "chars"): T = data.features - 1
 * input tokens per sequence, V = data.classes symbols.
 *   embed: Embedding(V, E)                       embed.weight [V, E]
 *   gru:   GRU(E, H), one layer, batch_first, h0 = 0
 *          gru.weight_ih_l0 [3H, E], gru.weight_hh_l0 [3H, H],
 *          gru.bias_ih_l0 [3H], gru.bias_hh_l0 [3H]; gate order (r, z, n)
 *   fc:    Linear(H, V) at every position        fc.weight [V, H], fc.bias [V]
 *   loss:  softmax cross-entropy, the mean over all B·T positions; the
 *          target of position t is token t + 1 (t->tok_tgt).
 * Init: embed.weight normal N(0, 1) (nn.Embedding's default); the GRU's four
 * tensors uniform in ±1/sqrt(H) (nn.GRU's default); fc uniform in ±1/sqrt(H)
 * (nn.Linear's default bound). Each from its own stream "init/<name>".
 *
 * Layout: every per-position tensor is TIME-MAJOR, row r = t·B + b, so the
 * B rows of one time step are contiguous — what the recurrent GEMM and the
 * GRU cell (kernels.h: gru_forward/gru_backward take contiguous [B, ·]) need.
 * The op data/time_major transposes the trainer's batch-major token ids
 * ([B, T], t->tok_in / t->tok_tgt) into this order once per step.
 *   x [T·B, E]        the embedded inputs
 *   gi [T·B, 3H]      x·W_ihᵀ + b_ih for every step, one GEMM
 *   hs [(T+1)·B, H]   h_{-1} = h0 = 0 (rows 0..B-1, zeroed at allocation and
 *                     never written), then h_0 .. h_{T-1}; so rows 0..T·B-1
 *                     are every step's h_prev and rows B..(T+1)·B-1 its h
 *   saved [T·B, 4H]   the cell's record for the backward (r, z, n, c_n)
 *   logits, probs, dlogits [T·B, V]
 *
 * Ops, each through sb_run_op (tracing.c) with a stable layer path, so every
 * tensor write is traced (per training step one record per op, the T time
 * steps of the recurrence inside one op each way):
 *   data/time_major, embed/lookup.fwd, gru/input.fwd (GEMM + bias),
 *   gru/step.fwd (per t: gh = h_prev·W_hhᵀ + b_hh, then the cell),
 *   fc/matmul.fwd, fc/bias.fwd, loss/xent.fwd;
 *   loss/xent.bwd, fc/matmul.bwd_weight, fc/bias.grad, fc/matmul.bwd_input,
 *   gru/step.bwd (backward through time: dgi, dgh of every step),
 *   gru/weight_hh.grad, gru/bias_hh.grad, gru/weight_ih.grad,
 *   gru/bias_ih.grad, gru/input.bwd, embed/scatter_add.bwd;
 *   then the shared optimizer (train.c).
 * Every op that adds into its output zeroes it first inside the op, so
 * recheck can run it twice.
 *
 * Reduction orders (beyond each kernel's own, kernels/kernels.h):
 *   - the gradient reaching h_{t-1} is dy_{t-1} + (dgh_t·W_hh + dh_t ⊙ z_t):
 *     the cell adds dh_t ⊙ z_t into a zeroed buffer, the GEMM (beta 1) adds
 *     dgh_t·W_hh to that, and the fc's gradient dy_{t-1} is added last;
 *   - dW_hh = Σ dgh_tᵀ·h_{t-1}, dW_ih = Σ dgi_tᵀ·x_t, db_hh, db_ih and the
 *     fc's gradients are each ONE weight_grad / bias_grad over all T·B rows
 *     in time-major row order (t outermost, then b): the kernel's order over
 *     rows, never a per-step accumulation;
 *   - embed.weight's gradient is one embedding_backward over the T·B rows in
 *     the same row order.
 * In fast mode the unordered reductions are the kernels' (weight_grad,
 * bias_grad, embedding_backward, the loss); the recurrence itself has no
 * reduction across rows.
 *
 * Not here: the token split data/tokens, the data ops and the optimizer
 * (train.c), the kernels, checkpoints (checkpoint.c walks the same table).
 */
#include "train_internal.h"

#include <math.h>
#include <string.h>

enum { P_EMB, P_WIH, P_WHH, P_BIH, P_BHH, P_WFC, P_BFC, N_PARAMS };

struct sb_rnn {
    int T, E, H, V;
    size_t n;                    /* T·B positions */
    int32_t *ids, *tgt;          /* backend [T·B], time-major inputs and targets */
    int32_t *host;               /* host staging [4·T·B] for the transposition */
    float *x, *gi, *gh, *hs, *saved;         /* forward */
    float *logits, *probs, *dlogits;
    float *dy;                   /* [T·B, H] the fc's gradient w.r.t. every h_t */
    float *dh, *carry;           /* [B, H] BPTT scratch of gru/step.bwd */
    float *dgi, *dgh;            /* [T·B, 3H] the cell's gradients, every step */
    float *dx;                   /* [T·B, E] */
};

/* ====================================================================== */
/* setup                                                                  */
/* ====================================================================== */

sb_status sb_rnn_setup(sb_trainer *t, sb_error *err) {
    const sb_run_config *c = &t->cfg;
    sb_backend *be = t->be;
    int B = c->batch;
    sb_rnn *r = calloc(1, sizeof *r);
    if (!r) return sb_error_set(err, SB_ERR_NOMEM, "out of memory for the rnn");
    t->rnn = r;
    r->T = c->data.features - 1;
    r->E = c->model.embed;
    r->H = c->model.hidden;
    r->V = c->data.classes;
    r->n = (size_t)r->T * (size_t)B;
    int E = r->E, H = r->H, V = r->V;

    size_t off = 0;
    int64_t s_emb[2] = {V, E}, s_wih[2] = {3 * H, E}, s_whh[2] = {3 * H, H}, s_b[1] = {3 * H};
    int64_t s_wfc[2] = {V, H}, s_bfc[1] = {V};
    sb_param *P = t->params;
    sb_param_set(&P[P_EMB], "embed.weight", 2, s_emb, SB_INIT_NORMAL, 0, 1.0f, &off);
    sb_param_set(&P[P_WIH], "gru.weight_ih_l0", 2, s_wih, SB_INIT_UNIFORM, H, 0.0f, &off);
    sb_param_set(&P[P_WHH], "gru.weight_hh_l0", 2, s_whh, SB_INIT_UNIFORM, H, 0.0f, &off);
    sb_param_set(&P[P_BIH], "gru.bias_ih_l0", 1, s_b, SB_INIT_UNIFORM, H, 0.0f, &off);
    sb_param_set(&P[P_BHH], "gru.bias_hh_l0", 1, s_b, SB_INIT_UNIFORM, H, 0.0f, &off);
    sb_param_set(&P[P_WFC], "fc.weight", 2, s_wfc, SB_INIT_UNIFORM, H, 0.0f, &off);
    sb_param_set(&P[P_BFC], "fc.bias", 1, s_bfc, SB_INIT_UNIFORM, H, 0.0f, &off);
    t->n_params = N_PARAMS;
    t->total = off;

    size_t n = r->n, bh = (size_t)B * H;
#define ALLOC(ptr, count) (ptr) = be->i->alloc(be, (count) * sizeof *(ptr))
    ALLOC(r->ids, n);
    ALLOC(r->tgt, n);
    ALLOC(r->x, n * E);
    ALLOC(r->gi, n * 3 * H);
    ALLOC(r->gh, bh * 3);
    ALLOC(r->hs, n * H + bh); /* zeroed: rows 0..B-1 are h0 */
    ALLOC(r->saved, n * 4 * H);
    ALLOC(r->logits, n * V);
    ALLOC(r->probs, n * V);
    ALLOC(r->dlogits, n * V);
    ALLOC(r->dy, n * H);
    ALLOC(r->dh, bh);
    ALLOC(r->carry, bh);
    ALLOC(r->dgi, n * 3 * H);
    ALLOC(r->dgh, n * 3 * H);
    ALLOC(r->dx, n * E);
#undef ALLOC
    r->host = malloc(4 * n * sizeof *r->host);
    if (!r->ids || !r->tgt || !r->x || !r->gi || !r->gh || !r->hs || !r->saved || !r->logits ||
        !r->probs || !r->dlogits || !r->dy || !r->dh || !r->carry || !r->dgi || !r->dgh ||
        !r->dx || !r->host)
        /* what was allocated is freed by sb_rnn_free (from sb_trainer_free) */
        return sb_error_set(err, SB_ERR_NOMEM, "out of memory allocating the rnn");
    return SB_OK;
}

void sb_rnn_free(sb_trainer *t) {
    sb_rnn *r = t->rnn;
    if (!r) return;
    sb_backend *be = t->be;
    void *bufs[] = {r->ids,   r->tgt,     r->x,  r->gi, r->gh,    r->hs,  r->saved, r->logits,
                    r->probs, r->dlogits, r->dy, r->dh, r->carry, r->dgi, r->dgh,   r->dx};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->i->free(be, bufs[i]);
    free(r->host);
    free(r);
    t->rnn = NULL;
}

/* ====================================================================== */
/* the ops                                                                */
/* ====================================================================== */

enum {
    OP_TIME_MAJOR, OP_EMBED_FWD, OP_INPUT_FWD, OP_STEP_FWD, OP_FC_FWD, OP_FC_BIAS, OP_XENT_FWD,
    OP_XENT_BWD, OP_FC_WGRAD, OP_FC_BGRAD, OP_FC_BWD_INPUT, OP_STEP_BWD, OP_WHH_GRAD,
    OP_BHH_GRAD, OP_WIH_GRAD, OP_BIH_GRAD, OP_INPUT_BWD, OP_EMBED_BWD
};


static void run_op(sb_trainer *t, void *arg) {
    int kind = *(const int *)arg;
    sb_backend *be = t->be;
    const sb_backend_i *k = be->i;
    sb_rnn *r = t->rnn;
    int B = t->cfg.batch, T = r->T, E = r->E, H = r->H, V = r->V, N = (int)r->n, H3 = 3 * H;
    size_t bh = (size_t)B * H;
    switch (kind) {
    case OP_TIME_MAJOR: { /* ids[t·B + b] = tok_in[b·T + t]; tgt likewise */
        int32_t *in = r->host, *tg = r->host + r->n, *out = r->host + 2 * r->n,
                *otg = r->host + 3 * r->n;
        k->download(be, in, t->tok_in, r->n * sizeof(int32_t));
        k->download(be, tg, t->tok_tgt, r->n * sizeof(int32_t));
        for (int b = 0; b < B; b++)
            for (int s = 0; s < T; s++) {
                out[(size_t)s * B + b] = in[(size_t)b * T + s];
                otg[(size_t)s * B + b] = tg[(size_t)b * T + s];
            }
        k->upload(be, r->ids, out, r->n * sizeof(int32_t));
        k->upload(be, r->tgt, otg, r->n * sizeof(int32_t));
        return;
    }
    case OP_EMBED_FWD: /* x[N, E] = embed.weight[ids] */
        k->embedding_forward(be, r->x, sb_param_data(t, P_EMB), r->ids, N, V, E);
        return;
    case OP_INPUT_FWD: /* gi[N, 3H] = x · W_ihᵀ + b_ih, every step at once */
        k->gemm(be, 0, 1, N, H3, E, 1.0f, r->x, E, sb_param_data(t, P_WIH), E, 0.0f, r->gi, H3);
        k->bias_add(be, r->gi, sb_param_data(t, P_BIH), N, H3);
        return;
    case OP_STEP_FWD: /* per t: gh = h_prev · W_hhᵀ + b_hh; h_t = cell(gi_t, gh, h_prev) */
        for (int s = 0; s < T; s++) {
            const float *hp = r->hs + (size_t)s * bh;
            k->gemm(be, 0, 1, B, H3, H, 1.0f, hp, H, sb_param_data(t, P_WHH), H, 0.0f, r->gh, H3);
            k->bias_add(be, r->gh, sb_param_data(t, P_BHH), B, H3);
            k->gru_forward(be, r->hs + (size_t)(s + 1) * bh, r->saved + (size_t)s * 4 * bh,
                           r->gi + (size_t)s * 3 * bh, r->gh, hp, B, H);
        }
        return;
    case OP_FC_FWD: /* logits[N, V] = h[N, H] · W_fcᵀ */
        k->gemm(be, 0, 1, N, V, H, 1.0f, r->hs + bh, H, sb_param_data(t, P_WFC), H, 0.0f, r->logits, V);
        return;
    case OP_FC_BIAS:
        k->bias_add(be, r->logits, sb_param_data(t, P_BFC), N, V);
        return;
    case OP_XENT_FWD: /* mean over the N positions */
        k->xent_forward(be, r->probs, t->loss, r->logits, r->tgt, N, V);
        return;
    case OP_XENT_BWD:
        k->zero(be, r->dlogits, r->n * V);
        k->xent_backward(be, r->dlogits, r->probs, r->tgt, N, V);
        return;
    case OP_FC_WGRAD: /* dW_fc[V, H] = dlogitsᵀ · h */
        k->weight_grad(be, sb_grad_data(t, P_WFC), r->dlogits, r->hs + bh, N, V, H);
        return;
    case OP_FC_BGRAD:
        k->zero(be, sb_grad_data(t, P_BFC), (size_t)V);
        k->bias_grad(be, sb_grad_data(t, P_BFC), r->dlogits, N, V);
        return;
    case OP_FC_BWD_INPUT: /* dy[N, H] = dlogits · W_fc */
        k->gemm(be, 0, 0, N, H, V, 1.0f, r->dlogits, V, sb_param_data(t, P_WFC), H, 0.0f, r->dy, H);
        return;
    case OP_STEP_BWD: /* backward through time, t = T-1 down to 0 */
        for (int s = T - 1; s >= 0; s--) {
            /* the gradient reaching h_s: dy_s alone at the last step, else
             * dy_s + carry (carry = what step s+1 sent back to its h_prev) */
            const float *dh = r->dy + (size_t)s * bh;
            if (s < T - 1) {
                k->residual_forward(be, r->dh, dh, r->carry, bh);
                dh = r->dh;
            }
            float *dgh = r->dgh + (size_t)s * 3 * bh;
            if (s > 0) k->zero(be, r->carry, bh);
            /* dgi_s, dgh_s; carry = dh ⊙ z (h0 is a constant: nothing to send at s = 0) */
            k->gru_backward(be, r->dgi + (size_t)s * 3 * bh, dgh, s > 0 ? r->carry : NULL, dh,
                            r->saved + (size_t)s * 4 * bh, r->hs + (size_t)s * bh, B, H);
            /* carry += dgh_s · W_hh: the path through gh = h_prev · W_hhᵀ */
            if (s > 0)
                k->gemm(be, 0, 0, B, H, H3, 1.0f, dgh, H3, sb_param_data(t, P_WHH), H, 1.0f, r->carry, H);
        }
        return;
    case OP_WHH_GRAD: /* dW_hh[3H, H] = Σ over all N rows of dgh ᵀ · h_prev */
        k->weight_grad(be, sb_grad_data(t, P_WHH), r->dgh, r->hs, N, H3, H);
        return;
    case OP_BHH_GRAD:
        k->zero(be, sb_grad_data(t, P_BHH), (size_t)H3);
        k->bias_grad(be, sb_grad_data(t, P_BHH), r->dgh, N, H3);
        return;
    case OP_WIH_GRAD: /* dW_ih[3H, E] = Σ over all N rows of dgi ᵀ · x */
        k->weight_grad(be, sb_grad_data(t, P_WIH), r->dgi, r->x, N, H3, E);
        return;
    case OP_BIH_GRAD:
        k->zero(be, sb_grad_data(t, P_BIH), (size_t)H3);
        k->bias_grad(be, sb_grad_data(t, P_BIH), r->dgi, N, H3);
        return;
    case OP_INPUT_BWD: /* dx[N, E] = dgi · W_ih */
        k->gemm(be, 0, 0, N, E, H3, 1.0f, r->dgi, H3, sb_param_data(t, P_WIH), E, 0.0f, r->dx, E);
        return;
    case OP_EMBED_BWD: /* dembed[V, E]: the rows of dx scattered onto their ids */
        k->zero(be, sb_grad_data(t, P_EMB), t->params[P_EMB].numel);
        k->embedding_backward(be, sb_grad_data(t, P_EMB), r->dx, r->ids, N, V, E);
        return;
    }
}

/* Runs one op of the step (traced when a trace is open). */
static void op(sb_trainer *t, int kind, const char *name, sb_stage stage, int n_in,
               const sb_view *in, int n_out, const sb_view *out) {
    sb_run_op(t, name, stage, n_in, in, n_out, out, 0, NULL, run_op, &kind);
}

#define F32 SB_F32
#define I32 SB_I32
#define PARAM(p) F32(sb_param_data(t, (p)), t->params[(p)].numel)
#define GRAD(p) F32(sb_grad_data(t, (p)), t->params[(p)].numel)

sb_status sb_rnn_step(sb_trainer *t, float *loss_out, sb_error *err) {
    sb_rnn *r = t->rnn;
    int B = t->cfg.batch;
    size_t n = r->n, bh = (size_t)B * r->H, nh = n * r->H, n3 = n * 3 * r->H, nl = n * r->V;
    const sb_stage F = SB_STAGE_FORWARD, BW = SB_STAGE_BACKWARD;
    sb_view ids = I32(r->ids, n), tgt = I32(r->tgt, n), x = F32(r->x, n * r->E);
    sb_view gi = F32(r->gi, n3), h = F32(r->hs + bh, nh), hprev = F32(r->hs, nh);
    sb_view saved = F32(r->saved, 4 * nh), logits = F32(r->logits, nl);
    sb_view probs = F32(r->probs, nl), dlogits = F32(r->dlogits, nl), dy = F32(r->dy, nh);
    sb_view dgi = F32(r->dgi, n3), dgh = F32(r->dgh, n3), dx = F32(r->dx, n * r->E);

    sb_step_tokens(t);
    {
        sb_view in[2] = {I32(t->tok_in, n), I32(t->tok_tgt, n)}, out[2] = {ids, tgt};
        op(t, OP_TIME_MAJOR, "data/time_major", SB_STAGE_DATA_BATCH, 2, in, 2, out);
    }

    /* ---- forward ---- */
    {
        sb_view in[2] = {ids, PARAM(P_EMB)};
        op(t, OP_EMBED_FWD, "embed/lookup.fwd", F, 2, in, 1, &x);
    }
    {
        sb_view in[3] = {x, PARAM(P_WIH), PARAM(P_BIH)};
        op(t, OP_INPUT_FWD, "gru/input.fwd", F, 3, in, 1, &gi);
    }
    {
        sb_view in[3] = {gi, PARAM(P_WHH), PARAM(P_BHH)}, out[2] = {h, saved};
        op(t, OP_STEP_FWD, "gru/step.fwd", F, 3, in, 2, out);
    }
    {
        sb_view in[2] = {h, PARAM(P_WFC)};
        op(t, OP_FC_FWD, "fc/matmul.fwd", F, 2, in, 1, &logits);
        sb_view inb[2] = {logits, PARAM(P_BFC)};
        op(t, OP_FC_BIAS, "fc/bias.fwd", F, 2, inb, 1, &logits);
        sb_view inx[2] = {logits, tgt}, outx[2] = {probs, F32(t->loss, 1)};
        op(t, OP_XENT_FWD, "loss/xent.fwd", SB_STAGE_LOSS, 2, inx, 2, outx);
    }
    float loss;
    t->be->i->download(t->be, &loss, t->loss, sizeof loss);
    if (!isfinite(loss))
        return sb_error_set(err, SB_ERR_RUN, "step %d: loss is %s", t->step + 1,
                            isnan(loss) ? "NaN" : "infinite");

    /* ---- backward ---- */
    {
        sb_view in[2] = {probs, tgt};
        op(t, OP_XENT_BWD, "loss/xent.bwd", BW, 2, in, 1, &dlogits);
        sb_view inw[2] = {dlogits, h}, outw[1] = {GRAD(P_WFC)}, outb[1] = {GRAD(P_BFC)};
        op(t, OP_FC_WGRAD, "fc/matmul.bwd_weight", BW, 2, inw, 1, outw);
        op(t, OP_FC_BGRAD, "fc/bias.grad", BW, 1, &dlogits, 1, outb);
        sb_view inx[2] = {dlogits, PARAM(P_WFC)};
        op(t, OP_FC_BWD_INPUT, "fc/matmul.bwd_input", BW, 2, inx, 1, &dy);
    }
    {
        sb_view in[4] = {dy, saved, hprev, PARAM(P_WHH)}, out[2] = {dgi, dgh};
        op(t, OP_STEP_BWD, "gru/step.bwd", BW, 4, in, 2, out);
        sb_view inw[2] = {dgh, hprev}, outw[1] = {GRAD(P_WHH)}, outb[1] = {GRAD(P_BHH)};
        op(t, OP_WHH_GRAD, "gru/weight_hh.grad", BW, 2, inw, 1, outw);
        op(t, OP_BHH_GRAD, "gru/bias_hh.grad", BW, 1, &dgh, 1, outb);
        sb_view inw2[2] = {dgi, x}, outw2[1] = {GRAD(P_WIH)}, outb2[1] = {GRAD(P_BIH)};
        op(t, OP_WIH_GRAD, "gru/weight_ih.grad", BW, 2, inw2, 1, outw2);
        op(t, OP_BIH_GRAD, "gru/bias_ih.grad", BW, 1, &dgi, 1, outb2);
        sb_view inx[2] = {dgi, PARAM(P_WIH)};
        op(t, OP_INPUT_BWD, "gru/input.bwd", BW, 2, inx, 1, &dx);
        sb_view ine[2] = {dx, ids}, oute[1] = {GRAD(P_EMB)};
        op(t, OP_EMBED_BWD, "embed/scatter_add.bwd", BW, 2, ine, 1, oute);
    }
    *loss_out = loss;
    return SB_OK;
}

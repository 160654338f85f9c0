/* config.c — validation of a resolved run config and its JSON rendering (for
 * checkpoint metadata and run.json).
 *
 * Not here: parsing suites (harness/suite.c does that, with JSON paths in its
 * errors); this file re-checks the invariants the engine relies on, so a
 * program that fills sb_run_config by hand gets a clear error too.
 */
#include "engine.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

/* the MLP: widths in range, first = data.features, last = data.classes */
static sb_status validate_mlp(const sb_run_config *c, sb_error *err) {
    const sb_model_config *m = &c->model;
    if (m->n_widths < 2 || m->n_widths > SB_MAX_LAYERS + 1)
        return sb_error_set(err, SB_ERR_ARG, "model: %d widths, expected 2..%d", m->n_widths,
                            SB_MAX_LAYERS + 1);
    for (int i = 0; i < m->n_widths; i++)
        if (m->widths[i] < 1 || m->widths[i] > 65536)
            return sb_error_set(err, SB_ERR_ARG, "model.widths[%d]: %d out of range 1..65536", i,
                                m->widths[i]);
    if (m->widths[0] != c->data.features)
        return sb_error_set(err, SB_ERR_ARG, "model: input width %d differs from data.features %d",
                            m->widths[0], c->data.features);
    if (m->widths[m->n_widths - 1] != c->data.classes)
        return sb_error_set(err, SB_ERR_ARG, "model: output width %d differs from data.classes %d",
                            m->widths[m->n_widths - 1], c->data.classes);
    return SB_OK;
}

/* the CNN: image data, channel counts, an odd kernel, room for two 2×2 pools */
static sb_status validate_cnn(const sb_run_config *c, sb_error *err) {
    const sb_model_config *m = &c->model;
    const sb_data_config *d = &c->data;
    if (d->height < 1)
        return sb_error_set(err, SB_ERR_ARG, "model: a cnn needs image data (data.kind \"shapes\")");
    for (int i = 0; i < 2; i++)
        if (m->channels[i] < 1 || m->channels[i] > 1024)
            return sb_error_set(err, SB_ERR_ARG, "model.channels[%d]: %d out of range 1..1024", i,
                                m->channels[i]);
    if (m->kernel < 1 || m->kernel > 15 || m->kernel % 2 == 0)
        return sb_error_set(err, SB_ERR_ARG, "model.kernel: %d, expected an odd size 1..15",
                            m->kernel);
    if (d->height < 4 || d->width < 4)
        return sb_error_set(err, SB_ERR_ARG, "model: two 2x2 pools need images of at least 4x4");
    if (m->pool != SB_POOL_MAX && m->pool != SB_POOL_AVG)
        return sb_error_set(err, SB_ERR_ARG, "model.pool: unknown pool");
    if (m->dropout != 0.0f)
        return sb_error_set(err, SB_ERR_ARG, "model.dropout: not supported by the cnn");
    return SB_OK;
}

/* the sequence models: token data, sizes in range */
static sb_status validate_seq(const sb_run_config *c, sb_error *err) {
    const sb_model_config *m = &c->model;
    int rnn = !strcmp(m->kind, "rnn");
    if (strcmp(c->data.kind, "chars") != 0)
        return sb_error_set(err, SB_ERR_ARG, "model: a %s needs token data (data.kind \"chars\")",
                            m->kind);
    if (c->data.features - 1 > 256)
        return sb_error_set(err, SB_ERR_ARG, "data.seq_len: %d, at most 256 for a %s",
                            c->data.features - 1, m->kind);
    if (m->dropout != 0.0f)
        return sb_error_set(err, SB_ERR_ARG, "model.dropout: not supported by the %s", m->kind);
    if (rnn) {
        if (m->embed < 1 || m->embed > 1024)
            return sb_error_set(err, SB_ERR_ARG, "model.embed: %d out of range 1..1024", m->embed);
        if (m->hidden < 1 || m->hidden > 1024)
            return sb_error_set(err, SB_ERR_ARG, "model.hidden: %d out of range 1..1024", m->hidden);
        return SB_OK;
    }
    if (m->d_model < 1 || m->d_model > 1024)
        return sb_error_set(err, SB_ERR_ARG, "model.d_model: %d out of range 1..1024", m->d_model);
    if (m->heads < 1 || m->heads > m->d_model || m->d_model % m->heads != 0)
        return sb_error_set(err, SB_ERR_ARG, "model.heads: %d does not divide d_model %d", m->heads,
                            m->d_model);
    if (m->layers < 1 || m->layers > SB_MAX_BLOCKS)
        return sb_error_set(err, SB_ERR_ARG, "model.layers: %d out of range 1..%d", m->layers,
                            SB_MAX_BLOCKS);
    if (m->mlp < 1 || m->mlp > 4096)
        return sb_error_set(err, SB_ERR_ARG, "model.mlp: %d out of range 1..4096", m->mlp);
    return SB_OK;
}

/* image data (height > 0) and its augmentation */
static sb_status validate_images(const sb_data_config *d, sb_error *err) {
    int images = d->height > 0;
    if (images && (d->channels < 1 || d->channels > 3 || d->height > 256 || d->width < 1 ||
                   d->width > 256 || d->features != d->channels * d->height * d->width))
        return sb_error_set(err, SB_ERR_ARG, "data: images need channels 1..3, height and width "
                            "1..256 and features = channels*height*width");
    if (!strcmp(d->kind, "shapes") && (!images || d->classes > SB_SHAPES_MAX))
        return sb_error_set(err, SB_ERR_ARG, "data: shapes need channels, height, width and at "
                            "most %d classes", SB_SHAPES_MAX);
    if (!(d->aug_flip >= 0.0f && d->aug_flip <= 1.0f) || d->aug_shift < 0)
        return sb_error_set(err, SB_ERR_ARG, "data.augment: flip in [0, 1], shift >= 0");
    if ((d->aug_flip > 0.0f || d->aug_shift > 0) && !images)
        return sb_error_set(err, SB_ERR_ARG, "data.augment: flip and shift need image data");
    if (images && (d->aug_shift >= d->height || d->aug_shift >= d->width))
        return sb_error_set(err, SB_ERR_ARG, "data.augment.shift: %d, must be below the image size",
                            d->aug_shift);
    return SB_OK;
}

sb_status sb_run_config_validate(const sb_run_config *c, sb_error *err) {
    const sb_model_config *m = &c->model;
    sb_status st;
    if (!strcmp(m->kind, "mlp"))
        st = validate_mlp(c, err);
    else if (!strcmp(m->kind, "cnn"))
        st = validate_cnn(c, err);
    else if (!strcmp(m->kind, "rnn") || !strcmp(m->kind, "transformer"))
        st = validate_seq(c, err);
    else
        return sb_error_set(err, SB_ERR_ARG, "model.kind: unknown model \"%s\"", m->kind);
    if (st != SB_OK) return st;
    if (!strcmp(c->data.kind, "chars") && strcmp(m->kind, "rnn") != 0 &&
        strcmp(m->kind, "transformer") != 0)
        return sb_error_set(err, SB_ERR_ARG, "model.kind: token data (data.kind \"chars\") needs "
                            "a sequence model (\"rnn\" or \"transformer\"), not \"%s\"", m->kind);
    if (!strcmp(c->data.kind, "chars") && (c->data.aug_noise > 0.0f || c->data.aug_feature_drop > 0.0f))
        return sb_error_set(err, SB_ERR_ARG, "data.augment: token data cannot be augmented with "
                            "noise or feature drop");
    if ((st = validate_images(&c->data, err)) != SB_OK) return st;
    if (c->data.samples < 2 || c->data.classes < 2 || c->data.features < 1)
        return sb_error_set(err, SB_ERR_ARG, "data: samples >= 2, classes >= 2, features >= 1");
    if (sb_data_kind_is_file(c->data.kind) &&
        (!c->data.x_path[0] || (strcmp(c->data.kind, "csv") != 0 && !c->data.y_path[0])))
        return sb_error_set(err, SB_ERR_ARG, "data: kind \"%s\" needs the paths of its files",
                            c->data.kind);
    if (sb_data_kind_is_file(c->data.kind) && !(c->data.scale > 0.0f && c->data.scale < INFINITY))
        return sb_error_set(err, SB_ERR_ARG, "data.scale: must be a finite number > 0");
    if (!(c->data.noise >= 0.0f))
        return sb_error_set(err, SB_ERR_ARG, "data.noise: must be >= 0");
    if (c->batch < 1 || c->batch > c->data.samples)
        return sb_error_set(err, SB_ERR_ARG, "train.batch: %d out of range 1..%d (data.samples)",
                            c->batch, c->data.samples);
    if (c->steps < 1) return sb_error_set(err, SB_ERR_ARG, "train.steps: must be >= 1");
    if (strcmp(c->optim.name, "sgd") != 0 && strcmp(c->optim.name, "adam") != 0)
        return sb_error_set(err, SB_ERR_ARG, "train.optimizer.name: unknown optimizer \"%s\"",
                            c->optim.name);
    if (!(c->optim.lr > 0.0f)) return sb_error_set(err, SB_ERR_ARG, "train.optimizer.lr: must be > 0");
    if (c->threads < 1) return sb_error_set(err, SB_ERR_ARG, "threads: must be >= 1");
    if (!(c->model.dropout >= 0.0f && c->model.dropout < 1.0f))
        return sb_error_set(err, SB_ERR_ARG, "model.dropout: must be in [0, 1)");
    if (!(c->data.aug_noise >= 0.0f) || !(c->data.aug_feature_drop >= 0.0f && c->data.aug_feature_drop < 1.0f))
        return sb_error_set(err, SB_ERR_ARG, "data.augment: noise >= 0, feature_drop in [0, 1)");
    if (c->data.loader_workers < 0 || c->data.loader_workers > 64)
        return sb_error_set(err, SB_ERR_ARG, "data.loader.workers: out of range 0..64");
    if (c->unseeded >> SB_UNSEEDED_COUNT)
        return sb_error_set(err, SB_ERR_ARG, "rng.unseeded: unknown stream bits");
    return SB_OK;
}

/* A float as the shortest decimal that reads back to the same float (so 0.01f
 * prints as 0.01, not as its double expansion 0.00999999977648258). */
static void add_float(cJSON *o, const char *key, float v) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    cJSON_AddRawToObject(o, key, buf);
}

static const char *const UNSEEDED_NAMES[SB_UNSEEDED_COUNT] = {
    "init", "data/source", "data/shuffle", "data/reshuffle", "data/augment", "dropout"};

const char *sb_unseeded_name(int bit_index) {
    return bit_index >= 0 && bit_index < SB_UNSEEDED_COUNT ? UNSEEDED_NAMES[bit_index] : "?";
}

int sb_unseeded_parse(const char *name, uint32_t *bit) {
    for (int i = 0; i < SB_UNSEEDED_COUNT; i++)
        if (!strcmp(name, UNSEEDED_NAMES[i])) {
            *bit = 1u << i;
            return 0;
        }
    return -1;
}

static const char *shuffle_name(sb_shuffle s) {
    return s == SB_SHUFFLE_NONE ? "none" : s == SB_SHUFFLE_ONCE ? "once" : "epoch";
}

char *sb_run_config_to_json(const sb_run_config *c) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "kind", c->model.kind);
    if (!strcmp(c->model.kind, "cnn")) {
        cJSON_AddItemToObject(model, "channels", cJSON_CreateIntArray(c->model.channels, 2));
        cJSON_AddNumberToObject(model, "kernel", c->model.kernel);
        cJSON_AddStringToObject(model, "pool", c->model.pool == SB_POOL_AVG ? "avg" : "max");
        cJSON_AddStringToObject(model, "activation", sb_act_name(c->model.act));
    } else if (!strcmp(c->model.kind, "rnn")) {
        cJSON_AddNumberToObject(model, "embed", c->model.embed);
        cJSON_AddNumberToObject(model, "hidden", c->model.hidden);
    } else if (!strcmp(c->model.kind, "transformer")) {
        cJSON_AddNumberToObject(model, "d_model", c->model.d_model);
        cJSON_AddNumberToObject(model, "heads", c->model.heads);
        cJSON_AddNumberToObject(model, "layers", c->model.layers);
        cJSON_AddNumberToObject(model, "mlp", c->model.mlp);
        cJSON_AddBoolToObject(model, "tied", c->model.tied);
    } else {
        cJSON_AddItemToObject(model, "widths",
                              cJSON_CreateIntArray(c->model.widths, c->model.n_widths));
        cJSON_AddStringToObject(model, "activation", sb_act_name(c->model.act));
        add_float(model, "dropout", c->model.dropout);
    }
    cJSON *data = cJSON_AddObjectToObject(root, "data");
    cJSON_AddStringToObject(data, "kind", c->data.kind);
    cJSON_AddNumberToObject(data, "samples", c->data.samples);
    cJSON_AddNumberToObject(data, "features", c->data.features);
    cJSON_AddNumberToObject(data, "classes", c->data.classes);
    if (c->data.height > 0) { /* images only, so vector runs keep their JSON byte for byte */
        cJSON_AddNumberToObject(data, "channels", c->data.channels);
        cJSON_AddNumberToObject(data, "height", c->data.height);
        cJSON_AddNumberToObject(data, "width", c->data.width);
    }
    if (sb_data_kind_is_file(c->data.kind)) {
        /* the files as resolved (absolute paths) and how they are read */
        if (!strcmp(c->data.kind, "csv")) {
            cJSON_AddStringToObject(data, "path", c->data.x_path);
            cJSON_AddBoolToObject(data, "header", c->data.csv_header);
            if (c->data.label_name[0])
                cJSON_AddStringToObject(data, "label_column", c->data.label_name);
            else
                cJSON_AddNumberToObject(data, "label_column", c->data.label_column);
        } else {
            cJSON_AddStringToObject(data, "x", c->data.x_path);
            cJSON_AddStringToObject(data, "y", c->data.y_path);
        }
        add_float(data, "scale", c->data.scale);
    } else {
        add_float(data, "noise", c->data.noise);
    }
    cJSON_AddStringToObject(data, "shuffle", shuffle_name(c->data.shuffle));
    cJSON *aug = cJSON_AddObjectToObject(data, "augment");
    add_float(aug, "noise", c->data.aug_noise);
    add_float(aug, "feature_drop", c->data.aug_feature_drop);
    if (c->data.height > 0) {
        add_float(aug, "flip", c->data.aug_flip);
        cJSON_AddNumberToObject(aug, "shift", c->data.aug_shift);
    }
    cJSON *loader = cJSON_AddObjectToObject(data, "loader");
    cJSON_AddNumberToObject(loader, "workers", c->data.loader_workers);
    cJSON_AddStringToObject(loader, "order", c->data.loader_completion ? "completion" : "ordered");
    cJSON *train = cJSON_AddObjectToObject(root, "train");
    cJSON_AddNumberToObject(train, "steps", c->steps);
    cJSON_AddNumberToObject(train, "batch", c->batch);
    cJSON *opt = cJSON_AddObjectToObject(train, "optimizer");
    cJSON_AddStringToObject(opt, "name", c->optim.name);
    add_float(opt, "lr", c->optim.lr);
    if (!strcmp(c->optim.name, "sgd")) {
        add_float(opt, "momentum", c->optim.momentum);
    } else {
        add_float(opt, "beta1", c->optim.beta1);
        add_float(opt, "beta2", c->optim.beta2);
        add_float(opt, "eps", c->optim.eps);
    }
    add_float(opt, "weight_decay", c->optim.weight_decay);
    /* the seed as a string: JSON numbers lose integers above 2^53 */
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    cJSON_AddStringToObject(root, "seed", seed);
    cJSON_AddStringToObject(root, "backend", c->backend);
    cJSON_AddStringToObject(root, "mode", sb_mode_name(c->mode));
    cJSON_AddNumberToObject(root, "threads", c->threads);
    cJSON_AddBoolToObject(root, "perturb", c->perturb);
    cJSON *un = cJSON_AddArrayToObject(root, "unseeded");
    for (int i = 0; i < SB_UNSEEDED_COUNT; i++)
        if (c->unseeded & (1u << i)) cJSON_AddItemToArray(un, cJSON_CreateString(sb_unseeded_name(i)));
    cJSON_AddBoolToObject(root, "trace", c->trace);
    cJSON_AddBoolToObject(root, "recheck", c->recheck);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

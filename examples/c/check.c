/*
 * check.c: verify softmax and LayerNorm written in C against specformer's golden cases, reading
 * the safetensors files directly — no specformer code, no libraries (C99 and libm).
 *
 *   cc -std=c99 -O2 -o check check.c -lm        (or: make)
 *   ./check ../../golden/cases/softmax/f64/n7_m12.safetensors ...   (or: make run, every float64 case)
 *
 * For each case file: parse the header JSON (a minimal scanner that skips strings and nesting),
 * read the metadata (formula, config.eps, the tolerance of out.y), recompute out.y from the in.*
 * tensors, and compare element by element with |a - e| <= atol + rtol*|e| (NaN matches NaN, an
 * infinity only the same infinity). Prints one line per case.
 *
 * Exit status: 0 every case passed (or was skipped), 1 a mismatch, 2 an unreadable file or bad
 * usage. Float64 (F64) cases of softmax and layer_norm are checked; others are skipped, saying why.
 * Little-endian hosts only (safetensors stores little-endian data).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RANK 8

typedef struct {
    const char *text; /* JSON text (not NUL-terminated) */
    size_t len;
} Json;

typedef struct {
    char dtype[8];
    int rank;
    long long shape[MAX_RANK];
    long long count;      /* product of the shape */
    const double *data;   /* F64 only; NULL otherwise */
} Tensor;

static const char *g_file; /* for messages */

static int fail_read(const char *why) {
    fprintf(stderr, "check: %s: %s\n", g_file, why);
    return -1;
}

/* ---------------------------------------------------------------------------- a minimal JSON scanner */

/* Index just past the JSON value starting at i (string, number, literal, object or array), or 0 on error. */
static size_t skip_value(Json j, size_t i) {
    while (i < j.len && (j.text[i] == ' ' || j.text[i] == '\t' || j.text[i] == '\n' || j.text[i] == '\r')) i++;
    if (i >= j.len) return 0;
    if (j.text[i] == '"') {
        for (i++; i < j.len; i++) {
            if (j.text[i] == '\\') i++;
            else if (j.text[i] == '"') return i + 1;
        }
        return 0;
    }
    if (j.text[i] == '{' || j.text[i] == '[') {
        int depth = 0;
        for (; i < j.len; i++) {
            char c = j.text[i];
            if (c == '"') {
                size_t e = skip_value(j, i);
                if (e == 0) return 0;
                i = e - 1;
            } else if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') {
                if (--depth == 0) return i + 1;
            }
        }
        return 0;
    }
    while (i < j.len && j.text[i] != ',' && j.text[i] != '}' && j.text[i] != ']' && j.text[i] != ' ') i++;
    return i;
}

/*
 * In the object starting at `obj` ('{'), the index of the value of key `key`, or 0 if absent.
 * Keys are compared as raw JSON text (the keys we look for need no escapes).
 */
static size_t find_key(Json j, size_t obj, const char *key) {
    size_t klen = strlen(key), i = obj + 1;
    while (i < j.len && j.text[obj] == '{') {
        while (i < j.len && strchr(" \t\r\n,", j.text[i]) != NULL) i++;
        if (i >= j.len || j.text[i] == '}') return 0;
        if (j.text[i] != '"') return 0;
        size_t kend = skip_value(j, i);
        if (kend == 0) return 0;
        int match = kend - i - 2 == klen && memcmp(j.text + i + 1, key, klen) == 0;
        i = kend;
        while (i < j.len && (j.text[i] == ' ' || j.text[i] == ':')) i++;
        if (match) return i;
        i = skip_value(j, i);
        if (i == 0) return 0;
    }
    return 0;
}

static int read_number(Json j, size_t at, double *out) {
    char buf[64];
    size_t end = skip_value(j, at), n;
    if (end == 0 || end - at >= sizeof buf) return -1;
    n = end - at;
    memcpy(buf, j.text + at, n);
    buf[n] = '\0';
    char *stop;
    errno = 0;
    *out = strtod(buf, &stop);
    return (stop == buf || errno != 0) ? -1 : 0;
}

/* Copy a JSON string value (with its escapes decoded; \u escapes become '?') into a malloc'ed buffer. */
static char *read_string(Json j, size_t at, size_t *len) {
    size_t end = skip_value(j, at);
    if (end == 0 || j.text[at] != '"') return NULL;
    char *s = malloc(end - at);
    size_t n = 0;
    if (s == NULL) return NULL;
    for (size_t i = at + 1; i < end - 1; i++) {
        char c = j.text[i];
        if (c == '\\' && i + 1 < end - 1) {
            char e = j.text[++i];
            switch (e) {
                case 'n': c = '\n'; break;
                case 't': c = '\t'; break;
                case 'r': c = '\r'; break;
                case 'b': c = '\b'; break;
                case 'f': c = '\f'; break;
                case 'u': c = '?'; i += 4; break;
                default: c = e; /* \" \\ \/ */
            }
        }
        s[n++] = c;
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* ---------------------------------------------------------------------------- the case file */

typedef struct {
    unsigned char *bytes;
    size_t size;
    Json header;
    const unsigned char *buffer; /* the byte buffer after the header */
    size_t buffer_size;
    char *meta;                  /* __metadata__.specformer, decoded */
    size_t meta_len;
} CaseFile;

static int load_file(const char *path, CaseFile *f) {
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) return fail_read(strerror(errno));
    if (fseek(fp, 0, SEEK_END) != 0) { fclose(fp); return fail_read("cannot seek"); }
    long size = ftell(fp);
    rewind(fp);
    if (size < 8) { fclose(fp); return fail_read("shorter than the 8-byte header length"); }
    f->bytes = malloc((size_t)size);
    if (f->bytes == NULL) { fclose(fp); return fail_read("out of memory"); }
    if (fread(f->bytes, 1, (size_t)size, fp) != (size_t)size) { fclose(fp); return fail_read("short read"); }
    fclose(fp);
    f->size = (size_t)size;
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = (n << 8) | f->bytes[k]; /* little-endian u64 */
    if (n > f->size - 8) return fail_read("the header length is larger than the file");
    f->header.text = (const char *)f->bytes + 8;
    f->header.len = (size_t)n;
    if (f->header.len == 0 || f->header.text[0] != '{') return fail_read("the header is not a JSON object");
    f->buffer = f->bytes + 8 + n;
    f->buffer_size = f->size - 8 - (size_t)n;
    size_t md = find_key(f->header, 0, "__metadata__");
    size_t sp = md == 0 ? 0 : find_key(f->header, md, "specformer");
    if (sp == 0) return fail_read("no __metadata__.specformer entry: not a specformer golden case");
    f->meta = read_string(f->header, sp, &f->meta_len);
    if (f->meta == NULL) return fail_read("__metadata__.specformer is not a JSON string");
    return 0;
}

static int get_tensor(const CaseFile *f, const char *name, Tensor *t) {
    char why[160];
    size_t at = find_key(f->header, 0, name);
    if (at == 0) {
        snprintf(why, sizeof why, "no tensor \"%s\"", name);
        return fail_read(why);
    }
    size_t d = find_key(f->header, at, "dtype"), s = find_key(f->header, at, "shape"), o = find_key(f->header, at, "data_offsets");
    if (d == 0 || s == 0 || o == 0) return fail_read("a tensor entry lacks dtype, shape or data_offsets");
    size_t len;
    char *dt = read_string(f->header, d, &len);
    if (dt == NULL || len >= sizeof t->dtype) { free(dt); return fail_read("bad dtype"); }
    strcpy(t->dtype, dt);
    free(dt);
    /* shape: [d0, d1, ...] */
    t->rank = 0;
    t->count = 1;
    size_t i = s + 1;
    while (i < f->header.len && f->header.text[i] != ']') {
        while (f->header.text[i] == ' ' || f->header.text[i] == ',') i++;
        if (f->header.text[i] == ']') break;
        double v;
        if (t->rank == MAX_RANK || read_number(f->header, i, &v) != 0 || v < 0 || v != floor(v)) return fail_read("bad shape");
        t->shape[t->rank++] = (long long)v;
        t->count *= (long long)v;
        i = skip_value(f->header, i);
        if (i == 0) return fail_read("bad shape");
    }
    double begin, end;
    size_t e1 = o + 1;
    if (read_number(f->header, e1, &begin) != 0) return fail_read("bad data_offsets");
    size_t e2 = skip_value(f->header, e1);
    while (e2 < f->header.len && (f->header.text[e2] == ',' || f->header.text[e2] == ' ')) e2++;
    if (read_number(f->header, e2, &end) != 0 || begin < 0 || end < begin || end > (double)f->buffer_size) return fail_read("data_offsets outside the byte buffer");
    t->data = NULL;
    if (strcmp(t->dtype, "F64") == 0) {
        if ((long long)(end - begin) != t->count * 8) return fail_read("data_offsets disagree with the shape");
        if (((uintptr_t)(f->buffer + (size_t)begin)) % 8 == 0) t->data = (const double *)(const void *)(f->buffer + (size_t)begin);
        else {
            double *copy = malloc((size_t)t->count * 8 + 1);
            if (copy == NULL) return fail_read("out of memory");
            memcpy(copy, f->buffer + (size_t)begin, (size_t)t->count * 8);
            t->data = copy; /* freed with the process */
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------- the formulas */

/* softmax over the last axis, max-subtracted; a row that is all -inf gives zeros (docs/NAMES.md). */
static void softmax(const Tensor *x, double *y) {
    long long m = x->rank == 0 ? 1 : x->shape[x->rank - 1];
    for (long long r = 0; m > 0 && r < x->count / m; r++) {
        const double *xr = x->data + r * m;
        double *yr = y + r * m, mx = -INFINITY, sum = 0;
        for (long long j = 0; j < m; j++) if (xr[j] > mx) mx = xr[j];
        if (mx == -INFINITY) {
            for (long long j = 0; j < m; j++) yr[j] = 0;
            continue;
        }
        for (long long j = 0; j < m; j++) sum += (yr[j] = exp(xr[j] - mx));
        for (long long j = 0; j < m; j++) yr[j] /= sum;
    }
}

/* LayerNorm over the last axis: biased variance (two passes), eps inside the square root. */
static void layer_norm(const Tensor *x, const Tensor *gamma, const Tensor *beta, double eps, double *y) {
    long long d = x->shape[x->rank - 1];
    for (long long r = 0; d > 0 && r < x->count / d; r++) {
        const double *xr = x->data + r * d;
        double mean = 0, var = 0;
        for (long long j = 0; j < d; j++) mean += xr[j];
        mean /= (double)d;
        for (long long j = 0; j < d; j++) var += (xr[j] - mean) * (xr[j] - mean);
        var /= (double)d;
        double inv = 1.0 / sqrt(var + eps);
        for (long long j = 0; j < d; j++) y[r * d + j] = (xr[j] - mean) * inv * gamma->data[j] + beta->data[j];
    }
}

/* ---------------------------------------------------------------------------- one case */

/* 0 pass, 1 mismatch, 2 unreadable, 3 skipped */
static int check_case(const char *path) {
    CaseFile f = {0};
    g_file = path;
    if (load_file(path, &f) != 0) { free(f.bytes); return 2; }
    Json meta = {f.meta, f.meta_len};
    if (f.meta_len == 0 || f.meta[0] != '{') {
        fail_read("__metadata__.specformer is not a JSON object");
        free(f.bytes);
        free(f.meta);
        return 2;
    }
    size_t cn = find_key(meta, 0, "case"), fm = find_key(meta, 0, "formula"), tl = find_key(meta, 0, "tolerance");
    size_t len;
    char *name = cn ? read_string(meta, cn, &len) : NULL;
    char *formula = fm ? read_string(meta, fm, &len) : NULL;
    int status = 2;
    if (name == NULL || formula == NULL || tl == 0) { fail_read("metadata lacks case, formula or tolerance"); goto done; }

    Tensor x, out;
    if (strcmp(formula, "softmax") != 0 && strcmp(formula, "layer_norm") != 0) {
        printf("SKIP %s: formula %s is not one this program recomputes\n", name, formula);
        status = 3;
        goto done;
    }
    {
        /* conventions this program does not compute: softmax over another axis, LayerNorm without
           beta or over several axes (docs/NAMES.md); such cases are skipped, never read as the default */
        static const char *const other[] = {"axis", "bias", "normalized_axes"};
        size_t cfg = find_key(meta, 0, "config");
        for (size_t i = 0; cfg != 0 && i < sizeof other / sizeof other[0]; i++) {
            if (find_key(meta, cfg, other[i]) != 0) {
                printf("SKIP %s: config.%s is a convention this program does not compute\n", name, other[i]);
                status = 3;
                goto done;
            }
        }
    }
    if (get_tensor(&f, "in.x", &x) != 0 || get_tensor(&f, "out.y", &out) != 0) goto done;
    if (x.data == NULL || out.data == NULL) {
        printf("SKIP %s: dtype %s (this program reads F64 cases)\n", name, x.dtype);
        status = 3;
        goto done;
    }
    if (out.count != x.count || x.rank == 0) { fail_read("out.y and in.x differ in size"); goto done; }

    /* the case's tolerance for out.y, or torch.testing's float64 default */
    double rtol = 1e-7, atol = 1e-7;
    size_t ty = find_key(meta, tl, "out.y");
    if (ty != 0) {
        size_t r = find_key(meta, ty, "rtol"), a = find_key(meta, ty, "atol");
        if (r == 0 || a == 0 || read_number(meta, r, &rtol) != 0 || read_number(meta, a, &atol) != 0) { fail_read("bad tolerance for out.y"); goto done; }
    }

    double *y = malloc((size_t)x.count * sizeof(double) + 1);
    if (y == NULL) { fail_read("out of memory"); goto done; }
    if (strcmp(formula, "softmax") == 0) softmax(&x, y);
    else {
        Tensor gamma, beta;
        double eps = 1e-5;
        size_t cfg = find_key(meta, 0, "config"), e = cfg ? find_key(meta, cfg, "eps") : 0;
        if (e != 0 && read_number(meta, e, &eps) != 0) { fail_read("bad config.eps"); free(y); goto done; }
        if (get_tensor(&f, "in.gamma", &gamma) != 0 || get_tensor(&f, "in.beta", &beta) != 0) { free(y); goto done; }
        long long d = x.shape[x.rank - 1];
        if (gamma.data == NULL || beta.data == NULL || gamma.count != d || beta.count != d) { fail_read("gamma and beta must be F64 of the last axis' size"); free(y); goto done; }
        layer_norm(&x, &gamma, &beta, eps, y);
    }

    long long bad = 0, worst = -1;
    double max_abs = 0, worst_ratio = -1;
    for (long long i = 0; i < x.count; i++) {
        double e = out.data[i], a = y[i];
        int ok;
        double ratio;
        if (isnan(e) || isnan(a) || isinf(e) || isinf(a)) {
            ok = (isnan(e) && isnan(a)) || e == a;
            ratio = ok ? 0 : INFINITY;
        } else {
            double diff = fabs(a - e), allowed = atol + rtol * fabs(e);
            ok = diff <= allowed;
            ratio = allowed > 0 ? diff / allowed : (diff == 0 ? 0 : INFINITY);
            if (diff > max_abs) max_abs = diff;
        }
        if (!ok) bad++;
        if (ratio > worst_ratio) { worst_ratio = ratio; worst = i; }
    }
    if (bad == 0) {
        printf("PASS %s  max_abs_err %.3g  (rtol %.3g, atol %.3g)\n", name, max_abs, rtol, atol);
        status = 0;
    } else {
        printf("FAIL %s  %lld of %lld elements outside |a - e| <= atol + rtol*|e| (rtol %.3g, atol %.3g); worst at flat index %lld: expected %.17g, computed %.17g\n",
               name, bad, x.count, rtol, atol, worst, out.data[worst], y[worst]);
        status = 1;
    }
    free(y);
done:
    free(name);
    free(formula);
    free(f.meta);
    free(f.bytes);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: check CASE.safetensors...\n  recomputes softmax and layer_norm float64 golden cases and compares them with out.y\n");
        return 2;
    }
    int failed = 0, unreadable = 0;
    for (int i = 1; i < argc; i++) {
        int s = check_case(argv[i]);
        if (s == 1) failed++;
        if (s == 2) unreadable++;
    }
    return unreadable > 0 ? 2 : failed > 0 ? 1 : 0;
}

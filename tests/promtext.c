/* promtext.c -- see promtext.h. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promtext.h"

typedef struct family {
    char name[128];
    char type[16];
    int help, typed, closed;    /* closed: its samples ended */
} family;

typedef struct reader {
    prom_doc *doc;
    family fams[64];
    size_t nfams;
    family *current;            /* the family of the last sample */
    int line;
} reader;

static int name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* The length of the metric name at s (0: none). */
static size_t name_len(const char *s)
{
    size_t n = 0;

    while (name_char(s[n], n == 0))
        n++;
    return n;
}

static int ends_with(const char *s, size_t len, const char *tail)
{
    size_t t = strlen(tail);

    return len >= t && memcmp(s + len - t, tail, t) == 0;
}

static family *find(reader *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->nfams; i++)
        if (strlen(r->fams[i].name) == len && memcmp(r->fams[i].name, name, len) == 0)
            return &r->fams[i];
    return NULL;
}

static family *declare(reader *r, const char *name, size_t len)
{
    family *f = find(r, name, len);

    if (f != NULL)
        return f;
    ck_assert_msg(r->nfams < sizeof(r->fams) / sizeof(r->fams[0]), "too many families");
    ck_assert_msg(len < sizeof(f->name), "line %d: name too long", r->line);
    f = &r->fams[r->nfams++];
    memset(f, 0, sizeof(*f));
    memcpy(f->name, name, len);
    return f;
}

static void comment(reader *r, const char *line)
{
    int help = strncmp(line, "# HELP ", 7) == 0;
    const char *name = line + 7;
    size_t n = name_len(name);
    family *f;

    ck_assert_msg(help || strncmp(line, "# TYPE ", 7) == 0, "line %d: unknown comment: %s",
                  r->line, line);
    ck_assert_msg(n > 0 && name[n] == ' ', "line %d: bad name: %s", r->line, line);
    ck_assert_msg(strncmp(name, "fmredisd_", 9) == 0, "line %d: not fmredisd_: %s", r->line,
                  line);
    f = declare(r, name, n);
    ck_assert_msg(!f->closed && r->current != f, "line %d: %s declared after its samples",
                  r->line, f->name);
    if (help) {
        ck_assert_msg(!f->help, "line %d: second HELP for %s", r->line, f->name);
        ck_assert_msg(name[n + 1] != '\0', "line %d: empty HELP", r->line);
        f->help = 1;
        return;
    }
    ck_assert_msg(!f->typed, "line %d: second TYPE for %s", r->line, f->name);
    ck_assert_msg(strcmp(name + n + 1, "counter") == 0 || strcmp(name + n + 1, "gauge") == 0 ||
                      strcmp(name + n + 1, "summary") == 0,
                  "line %d: type %s", r->line, name + n + 1);
    snprintf(f->type, sizeof(f->type), "%s", name + n + 1);
    f->typed = 1;
    if (strcmp(f->type, "counter") == 0)
        ck_assert_msg(ends_with(f->name, strlen(f->name), "_total"),
                      "counter %s does not end in _total", f->name);
    r->doc->types = realloc(r->doc->types, (r->doc->ntypes + 1) * sizeof(char *));
    ck_assert(r->doc->types != NULL);
    r->doc->types[r->doc->ntypes++] = strdup(line + 7);
}

/* Checks the labels from just after '{'; returns the end (after '}') and
 * whether a quantile label was there. */
static const char *labels(reader *r, const char *p, int *quantile)
{
    *quantile = 0;
    while (*p != '}') {
        size_t n = 0;

        while (name_char(p[n], n == 0) && p[n] != ':')
            n++;
        ck_assert_msg(n > 0 && p[n] == '=' && p[n + 1] == '"', "line %d: bad label at %s",
                      r->line, p);
        if (n == 8 && memcmp(p, "quantile", 8) == 0) {
            *quantile = 1;
            ck_assert_msg(strncmp(p + n, "=\"0.5\"", 6) == 0 ||
                              strncmp(p + n, "=\"0.99\"", 7) == 0 ||
                              strncmp(p + n, "=\"0.999\"", 8) == 0,
                          "line %d: quantile %s", r->line, p);
        }
        for (p += n + 2; *p != '"'; p++) {
            ck_assert_msg(*p != '\0' && *p != '\n', "line %d: unterminated label", r->line);
            if (*p == '\\') {
                p++;
                ck_assert_msg(*p == '\\' || *p == '"' || *p == 'n', "line %d: escape \\%c",
                              r->line, *p);
            }
        }
        p++;
        if (*p == ',')
            p++;
        else
            ck_assert_msg(*p == '}', "line %d: expected , or } at %s", r->line, p);
    }
    return p + 1;
}

static void sample(reader *r, const char *line)
{
    size_t n = name_len(line), flen = n;
    const char *p = line + n, *v;
    prom_sample *s;
    family *f;
    char *end;
    int quantile = 0;

    ck_assert_msg(n > 0, "line %d: no name: %s", r->line, line);
    f = find(r, line, n);
    if (f == NULL) {
        /* A summary's _sum or _count. */
        flen = ends_with(line, n, "_sum") ? n - 4 : ends_with(line, n, "_count") ? n - 6 : n;
        f = find(r, line, flen);
        ck_assert_msg(f != NULL && strcmp(f->type, "summary") == 0,
                      "line %d: sample of an undeclared family: %s", r->line, line);
    }
    ck_assert_msg(f->typed && f->help, "line %d: %s has no TYPE or HELP", r->line, f->name);
    ck_assert_msg(!f->closed, "line %d: samples of %s are not together", r->line, f->name);
    if (r->current != NULL && r->current != f)
        r->current->closed = 1;
    r->current = f;
    if (*p == '{')
        p = labels(r, p + 1, &quantile);
    if (strcmp(f->type, "summary") == 0)
        ck_assert_msg(quantile == (flen == n), "line %d: quantile label wrong", r->line);
    ck_assert_msg(*p == ' ', "line %d: no value: %s", r->line, line);
    v = p + 1;
    r->doc->samples = realloc(r->doc->samples, (r->doc->n + 1) * sizeof(*s));
    ck_assert(r->doc->samples != NULL);
    s = &r->doc->samples[r->doc->n];
    if (strcmp(v, "NaN") == 0) {
        s->value = NAN;
    } else {
        s->value = strtod(v, &end);
        ck_assert_msg(end != v && *end == '\0' && isfinite(s->value), "line %d: value %s",
                      r->line, v);
    }
    s->series = strndup(line, (size_t)(p - line));
    ck_assert(s->series != NULL);
    for (size_t i = 0; i < r->doc->n; i++)
        ck_assert_msg(strcmp(r->doc->samples[i].series, s->series) != 0,
                      "line %d: %s twice", r->line, s->series);
    r->doc->n++;
}

void prom_parse(prom_doc *doc, const char *text)
{
    reader r = {.doc = doc};
    const char *p = text;

    memset(doc, 0, sizeof(*doc));
    ck_assert_msg(*p != '\0', "no metrics at all");
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        char *line;

        ck_assert_msg(nl != NULL, "the last line has no newline");
        line = strndup(p, (size_t)(nl - p));
        ck_assert(line != NULL);
        r.line++;
        ck_assert_msg(line[0] != '\0', "line %d is empty", r.line);
        if (line[0] == '#')
            comment(&r, line);
        else
            sample(&r, line);
        free(line);
        p = nl + 1;
    }
    for (size_t i = 0; i < r.nfams; i++)
        ck_assert_msg(r.fams[i].typed, "%s has HELP but no TYPE", r.fams[i].name);
}

void prom_free(prom_doc *doc)
{
    for (size_t i = 0; i < doc->n; i++)
        free(doc->samples[i].series);
    for (size_t i = 0; i < doc->ntypes; i++)
        free(doc->types[i]);
    free(doc->samples);
    free(doc->types);
}

double prom_value(const prom_doc *doc, const char *series)
{
    for (size_t i = 0; i < doc->n; i++)
        if (strcmp(doc->samples[i].series, series) == 0)
            return doc->samples[i].value;
    ck_abort_msg("no sample %s", series);
    return NAN;
}

int prom_has_type(const prom_doc *doc, const char *fam, const char *type)
{
    char want[192];

    snprintf(want, sizeof(want), "%s %s", fam, type);
    for (size_t i = 0; i < doc->ntypes; i++)
        if (strcmp(doc->types[i], want) == 0)
            return 1;
    return 0;
}

/*
 * ks_cli_output.c - table/json/yaml/csv rendering of JSON answers.
 * Table cells are truncated at KS_CLI_CELL_MAX characters so a long feature list
 * does not wreck the layout; json/yaml/csv never truncate.
 */
#include "ks_cli_output.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KS_CLI_CELL_MAX 60
#define KS_CLI_VALUE_MAX 8192

static const char *const format_names[KS_OUT__COUNT] = {"table", "json", "yaml", "csv"};

int ks_cli_format_from_str(const char *s)
{
    for (int i = 0; s && i < KS_OUT__COUNT; i++)
        if (strcmp(s, format_names[i]) == 0)
            return i;
    return -1;
}

static const json_t *lookup_path(const json_t *item, const char *path)
{
    char key[128];
    const json_t *v = item;
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        path += n + (dot ? 1 : 0);
    }
    return v;
}

static void scalar_str(const json_t *v, char *buf, size_t cap)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        snprintf(buf, cap, "%s", json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(buf, cap, "%.2f", json_real_value(v));
        break;
    case JSON_TRUE:
        snprintf(buf, cap, "true");
        break;
    case JSON_FALSE:
        snprintf(buf, cap, "false");
        break;
    case JSON_NULL:
        snprintf(buf, cap, "-");
        break;
    default: {
        char *s = json_dumps(v, JSON_COMPACT);
        snprintf(buf, cap, "%s", s ? s : "");
        free(s);
    }
    }
}

const char *ks_cli_value_str(const json_t *item, const char *path, char *buf, size_t cap)
{
    const json_t *v = lookup_path(item, path);
    buf[0] = '\0';
    if (!v)
        return buf;
    if (!json_is_array(v)) {
        scalar_str(v, buf, cap);
        return buf;
    }
    size_t used = 0, i;
    const json_t *e;
    json_array_foreach(v, i, e)
    {
        char one[256];
        if (json_is_object(e) || json_is_array(e)) {
            snprintf(buf, cap, "[%zu items]", json_array_size(v));
            return buf;
        }
        scalar_str(e, one, sizeof(one));
        int n = snprintf(buf + used, cap - used, "%s%s", i ? "," : "", one);
        if (n < 0 || (size_t)n >= cap - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

static void print_csv_cell(FILE *out, const char *s)
{
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* Plain scalars YAML 1.1/1.2 would read as something other than a string. */
static bool yaml_needs_quotes(const char *s)
{
    static const char *const words[] = {"y", "n", "yes", "no", "on", "off", "true", "false",
                                        "null", "~"};
    if (!s[0] || strpbrk(s, ":#{}[],&*!|>'\"%@`\n\t") || s[0] == '-' || s[0] == ' ' ||
        s[strlen(s) - 1] == ' ')
        return true;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasecmp(s, words[i]) == 0)
            return true;
    /* Anything that starts like a number (1e3, .5, +1, 0x1f, 1_000) is quoted. */
    return strchr("0123456789+.", s[0]) != NULL;
}

static void yaml_scalar(FILE *out, const json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (!yaml_needs_quotes(s)) {
            fputs(s, out);
        } else {
            char *q = json_dumps(v, JSON_ENCODE_ANY);
            fputs(q ? q : "\"\"", out);
            free(q);
        }
        return;
    }
    char buf[128];
    scalar_str(v, buf, sizeof(buf));
    fputs(json_is_null(v) ? "null" : buf, out);
}

void ks_cli_print_yaml(FILE *out, const json_t *v, int indent)
{
    const char *key;
    const json_t *e;
    size_t i;
    if (json_is_object(v)) {
        if (json_object_size(v) == 0) {
            fprintf(out, "%*s{}\n", indent, "");
            return;
        }
        json_object_foreach((json_t *)v, key, e)
        {
            fprintf(out, "%*s%s:", indent, "", key);
            if ((json_is_object(e) && json_object_size(e)) || (json_is_array(e) && json_array_size(e))) {
                fputc('\n', out);
                ks_cli_print_yaml(out, e, indent + 2);
            } else {
                fputc(' ', out);
                if (json_is_array(e))
                    fputs("[]", out);
                else if (json_is_object(e))
                    fputs("{}", out);
                else
                    yaml_scalar(out, e);
                fputc('\n', out);
            }
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, e)
        {
            if (json_is_object(e) && json_object_size(e)) {
                /* First key on the dash line, the rest indented under it. */
                fprintf(out, "%*s-\n", indent, "");
                ks_cli_print_yaml(out, e, indent + 2);
            } else if (json_is_array(e) && json_array_size(e)) {
                fprintf(out, "%*s-\n", indent, "");
                ks_cli_print_yaml(out, e, indent + 2);
            } else {
                fprintf(out, "%*s- ", indent, "");
                yaml_scalar(out, e);
                fputc('\n', out);
            }
        }
    } else {
        fprintf(out, "%*s", indent, "");
        yaml_scalar(out, v);
        fputc('\n', out);
    }
}

void ks_cli_print_list(FILE *out, ks_cli_format fmt, const json_t *items,
                       const ks_cli_column *cols, size_t n_cols)
{
    ks_cli_print_rows(out, fmt, items, cols, n_cols, true);
}

void ks_cli_print_rows(FILE *out, ks_cli_format fmt, const json_t *items,
                       const ks_cli_column *cols, size_t n_cols, bool header)
{
    if (fmt == KS_OUT_JSON) {
        json_dumpf(items, out, JSON_INDENT(2));
        fputc('\n', out);
        return;
    }
    if (fmt == KS_OUT_YAML) {
        ks_cli_print_yaml(out, items, 0);
        return;
    }
    size_t n_rows = json_array_size(items);
    char *cell = malloc(KS_CLI_VALUE_MAX);
    if (!cell)
        return;
    if (fmt == KS_OUT_CSV) {
        for (size_t c = 0; header && c < n_cols; c++)
            fprintf(out, "%s%s", c ? "," : "", cols[c].header);
        if (header)
            fputc('\n', out);
        for (size_t r = 0; r < n_rows; r++) {
            for (size_t c = 0; c < n_cols; c++) {
                if (c)
                    fputc(',', out);
                print_csv_cell(out, ks_cli_value_str(json_array_get(items, r), cols[c].path,
                                                     cell, KS_CLI_VALUE_MAX));
            }
            fputc('\n', out);
        }
        free(cell);
        return;
    }
    size_t width[32] = {0};
    if (n_cols > 32)
        n_cols = 32;
    for (size_t c = 0; c < n_cols; c++)
        width[c] = strlen(cols[c].header);
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < n_cols; c++) {
            size_t n = strlen(ks_cli_value_str(json_array_get(items, r), cols[c].path, cell,
                                               KS_CLI_VALUE_MAX));
            n = n > KS_CLI_CELL_MAX ? KS_CLI_CELL_MAX : n;
            if (n > width[c])
                width[c] = n;
        }
    /* The last column is not padded: no trailing spaces. */
    for (size_t c = 0; header && c < n_cols; c++)
        fprintf(out, "%-*s%s", c + 1 < n_cols ? (int)width[c] : 0, cols[c].header,
                c + 1 < n_cols ? "  " : "\n");
    for (size_t r = 0; r < n_rows; r++)
        for (size_t c = 0; c < n_cols; c++) {
            ks_cli_value_str(json_array_get(items, r), cols[c].path, cell, KS_CLI_VALUE_MAX);
            if (strlen(cell) > KS_CLI_CELL_MAX)
                memcpy(cell + KS_CLI_CELL_MAX - 3, "...", 4);
            fprintf(out, "%-*s%s", c + 1 < n_cols ? (int)width[c] : 0, cell,
                    c + 1 < n_cols ? "  " : "\n");
        }
    if (n_rows == 0 && header)
        fprintf(out, "(none)\n");
    free(cell);
}

/* Key/value rows of an object, nested objects flattened with dotted keys. */
static void flatten(FILE *out, ks_cli_format fmt, const json_t *obj, const char *prefix, int width)
{
    const char *key;
    const json_t *v;
    char *cell = malloc(KS_CLI_VALUE_MAX);
    if (!cell)
        return;
    json_object_foreach((json_t *)obj, key, v)
    {
        char full[256];
        snprintf(full, sizeof(full), "%s%s%s", prefix, prefix[0] ? "." : "", key);
        if (json_is_object(v) && json_object_size(v) > 0) {
            flatten(out, fmt, v, full, width);
            continue;
        }
        const char *leaf = full;
        json_t *wrap = json_object();
        json_object_set(wrap, "v", (json_t *)v);
        ks_cli_value_str(wrap, "v", cell, KS_CLI_VALUE_MAX);
        json_decref(wrap);
        if (fmt == KS_OUT_CSV) {
            print_csv_cell(out, leaf);
            fputc(',', out);
            print_csv_cell(out, cell);
            fputc('\n', out);
        } else {
            fprintf(out, "%-*s  %s\n", width, leaf, cell);
        }
    }
    free(cell);
}

void ks_cli_print_object(FILE *out, ks_cli_format fmt, const json_t *obj)
{
    if (fmt == KS_OUT_JSON) {
        json_dumpf(obj, out, JSON_INDENT(2));
        fputc('\n', out);
    } else if (fmt == KS_OUT_YAML) {
        ks_cli_print_yaml(out, obj, 0);
    } else if (!json_is_object(obj)) {
        char buf[256];
        scalar_str(obj, buf, sizeof(buf));
        fprintf(out, "%s\n", buf);
    } else {
        if (fmt == KS_OUT_CSV)
            fprintf(out, "field,value\n");
        flatten(out, fmt, obj, "", 24);
    }
}

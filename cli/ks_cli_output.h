/*
 * ks_cli_output.h - renders API answers for people and scripts: table (default),
 * json, yaml or csv.  Lists print the given columns; single objects print one
 * key/value row per (flattened) field.
 */
#ifndef KS_CLI_OUTPUT_H
#define KS_CLI_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

typedef enum ks_cli_format { KS_OUT_TABLE, KS_OUT_JSON, KS_OUT_YAML, KS_OUT_CSV, KS_OUT__COUNT } ks_cli_format;

/* -1 when unknown. */
int ks_cli_format_from_str(const char *s);

/* A column: its header and the dotted path of the value inside each item
 * ("cpus.total"); arrays of scalars are joined with ','. */
typedef struct ks_cli_column {
    const char *header;
    const char *path;
} ks_cli_column;

/* Prints `items` (a JSON array of objects). */
void ks_cli_print_list(FILE *out, ks_cli_format fmt, const json_t *items,
                       const ks_cli_column *cols, size_t n_cols);
/* Same, printing the header only when `header` (follow-mode batches after the first). */
void ks_cli_print_rows(FILE *out, ks_cli_format fmt, const json_t *items,
                       const ks_cli_column *cols, size_t n_cols, bool header);
/* Prints one object. */
void ks_cli_print_object(FILE *out, ks_cli_format fmt, const json_t *obj);
/* The value at a dotted path as text into buf ("" when absent). */
const char *ks_cli_value_str(const json_t *item, const char *path, char *buf, size_t cap);
/* YAML rendering of any JSON value (used by both printers). */
void ks_cli_print_yaml(FILE *out, const json_t *v, int indent);

#endif

/*
 * load_csv.c — CSV files with a header row and numeric cells. One row is
 * one example; the named target column becomes the targets (m) and every
 * other column, in file order, one input: inputs (m, columns - 1), which is
 * X (n_x × m) column-major. Commas separate; "\r\n", blank lines, spaces
 * around cells, a UTF-8 byte order mark and double-quoted cells ("" for a
 * quote) are accepted; quoted cells cannot span lines.
 */
#include "load_tensor.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NO_TARGET SIZE_MAX
#define FIRST_ROWS 64

typedef struct csv_reader {
  nn_context *ctx;
  const char *call, *name; /* name: the file, for messages */
  FILE *file;
  char *line; /* the current line (getline's buffer), cut into cells */
  size_t line_capacity, line_number;
  char *header; /* the header line, kept for the column names */
  char **names; /* names[c]: column c's name, pointing into header */
  size_t columns;
  size_t target; /* index of the target column, or NO_TARGET */
  float *inputs; /* rows × (columns - has target), row-major */
  double *targets;
  size_t rows, row_capacity;
} csv_reader;

/* ------------------------------------------------------------------------ */
/* Lines and cells                                                           */
/* ------------------------------------------------------------------------ */

static bool is_space(char c) {
  return c == ' ' || c == '\t';
}

static bool is_blank(const char *text) {
  while (is_space(*text))
    text++;
  return *text == '\0';
}

/* The next non-blank line without its "\n" / "\r\n"; *eof at the end. */
static nn_status next_line(csv_reader *r, bool *eof) {
  for (;;) {
    errno = 0;
    ssize_t length = getline(&r->line, &r->line_capacity, r->file);
    if (length < 0) {
      *eof = true;
      if (ferror(r->file) || errno == ENOMEM)
        return NNLIB_FAIL_CALL(
            r->ctx, errno == ENOMEM ? NN_ERROR_OUT_OF_MEMORY : NN_ERROR_IO,
            r->call, "%s: reading line %zu failed: %s", r->name,
            r->line_number + 1, strerror(errno));
      return NN_OK;
    }
    r->line_number++;
    if (strlen(r->line) != (size_t)length)
      return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_FORMAT, r->call,
                             "%s: line %zu holds a NUL byte: not text", r->name,
                             r->line_number);
    while (length > 0 &&
           (r->line[length - 1] == '\n' || r->line[length - 1] == '\r'))
      r->line[--length] = '\0';
    if (!is_blank(r->line)) {
      *eof = false;
      return NN_OK;
    }
  }
}

/* A double-quoted cell at *cursor (on the opening quote): unquoted in
 * place, "" becoming ". Returns the end of the cell's text. */
static nn_status unquote(csv_reader *r, size_t column, char **cursor,
                         char **end) {
  char *read = *cursor + 1, *write = *cursor;
  for (;; read++) {
    if (*read == '\0')
      return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_FORMAT, r->call,
                             "%s: line %zu, column %zu: unterminated quote",
                             r->name, r->line_number, column + 1);
    if (*read == '"' && read[1] != '"')
      break;
    if (*read == '"')
      read++;
    *write++ = *read;
  }
  *end = write;
  for (read++; is_space(*read); read++)
    ;
  if (*read != ',' && *read != '\0')
    return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_FORMAT, r->call,
                           "%s: line %zu, column %zu: text after a closing "
                           "quote",
                           r->name, r->line_number, column + 1);
  *cursor = read;
  return NN_OK;
}

/* Cuts the cell at *cursor out of the line (trimmed, unquoted, NUL
 * terminated) into *cell and moves *cursor past its comma; *cursor is NULL
 * after the last cell. */
static nn_status next_cell(csv_reader *r, size_t column, char **cursor,
                           char **cell) {
  char *at = *cursor, *end = at;
  while (is_space(*at))
    at++;
  *cell = at;
  if (*at == '"') {
    nn_status status = unquote(r, column, &at, &end);
    if (status != NN_OK)
      return status;
  } else {
    at += strcspn(at, ",");
    for (end = at; end > *cell && is_space(end[-1]); end--)
      ;
  }
  *cursor = *at == ',' ? at + 1 : NULL;
  *end = '\0';
  return NN_OK;
}

/* ------------------------------------------------------------------------ */
/* The header                                                                */
/* ------------------------------------------------------------------------ */

/* "a, b, c" (at most about 400 characters) for the missing-column error. */
static void list_columns(const csv_reader *r, char *text, size_t size) {
  size_t used = 0;
  text[0] = '\0';
  for (size_t c = 0; c < r->columns && used < size; c++)
    used += (size_t)snprintf(text + used, size - used, "%s'%s'", c ? ", " : "",
                             r->names[c]);
  if (used >= size && size > 4)
    strcpy(text + size - 4, "...");
}

/* Finds the target column, which must be there once. */
static nn_status find_target(csv_reader *r, const char *target_column) {
  r->target = NO_TARGET;
  if (!target_column)
    return NN_OK;
  for (size_t c = 0; c < r->columns; c++) {
    if (strcmp(r->names[c], target_column) != 0)
      continue;
    if (r->target != NO_TARGET)
      return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_FORMAT, r->call,
                             "%s: two columns are named '%s' (%zu and %zu)",
                             r->name, target_column, r->target + 1, c + 1);
    r->target = c;
  }
  if (r->target != NO_TARGET)
    return NN_OK;
  char available[400];
  list_columns(r, available, sizeof available);
  return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_INVALID_ARGUMENT, r->call,
                         "%s: no column named '%s'; the columns are %s",
                         r->name, target_column, available);
}

/* Line 1 (the first non-blank line): the column names. The line buffer
 * becomes the header; getline gets a fresh one. */
static nn_status read_header(csv_reader *r, const char *target_column) {
  bool eof = false;
  nn_status status = next_line(r, &eof);
  if (status == NN_OK && eof)
    return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_FORMAT, r->call,
                           "%s: empty file: expected a header row", r->name);
  if (status != NN_OK)
    return status;
  r->header = r->line;
  r->line = NULL;
  r->line_capacity = 0;
  char *cursor = r->header;
  if (strncmp(cursor, "\xEF\xBB\xBF", 3) == 0) /* UTF-8 byte order mark */
    cursor += 3;
  size_t commas = 0;
  for (const char *c = cursor; *c; c++)
    commas += *c == ',';
  status = nnlib_host_alloc(r->ctx, commas + 1, sizeof *r->names,
                            (void **)&r->names);
  while (status == NN_OK && cursor) {
    size_t column = r->columns++;
    status = next_cell(r, column, &cursor, &r->names[column]);
  }
  return status == NN_OK ? find_target(r, target_column) : status;
}

/* ------------------------------------------------------------------------ */
/* Rows                                                                      */
/* ------------------------------------------------------------------------ */

/* Room for one more row. */
static nn_status reserve_row(csv_reader *r, size_t width) {
  if (r->rows < r->row_capacity)
    return NN_OK;
  size_t rows = r->row_capacity ? r->row_capacity * 2 : FIRST_ROWS, bytes;
  if (!nnlib_checked_mul(rows, width * sizeof(float), &bytes))
    return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_OUT_OF_MEMORY, r->call,
                           "%s: too many rows", r->name);
  float *inputs = realloc(r->inputs, bytes ? bytes : 1);
  if (inputs)
    r->inputs = inputs;
  double *targets = realloc(r->targets, rows * sizeof(double));
  if (targets)
    r->targets = targets;
  if (!inputs || !targets)
    return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_OUT_OF_MEMORY, r->call,
                           "%s: out of host memory at line %zu", r->name,
                           r->line_number);
  r->row_capacity = rows;
  return NN_OK;
}

/* The cell as a finite number (float range for inputs). */
static nn_status parse_number(csv_reader *r, size_t column, const char *cell,
                              double *value) {
  const char *problem = NULL;
  char *end = NULL;
  errno = 0;
  *value = strtod(cell, &end);
  if (*cell == '\0')
    problem = "empty cell";
  else if (end == cell || *end != '\0')
    problem = "not a number";
  else if (!isfinite(*value) || (errno == ERANGE && fabs(*value) > 1.0))
    problem = "not a finite number";
  else if (column != r->target && fabs(*value) > FLT_MAX)
    problem = "too large for float32";
  if (!problem)
    return NN_OK;
  nn_status status =
      end == cell || *end != '\0' ? NN_ERROR_FORMAT : NN_ERROR_INVALID_DATA;
  if (*cell == '\0')
    return NNLIB_FAIL_CALL(r->ctx, status, r->call,
                           "%s: line %zu, column %zu ('%.60s'): empty cell",
                           r->name, r->line_number, column + 1,
                           r->names[column]);
  return NNLIB_FAIL_CALL(r->ctx, status, r->call,
                         "%s: line %zu, column %zu ('%.60s'): '%.40s' is %s",
                         r->name, r->line_number, column + 1, r->names[column],
                         cell, problem);
}

static nn_status ragged(csv_reader *r, const char *how) {
  return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_FORMAT, r->call,
                         "%s: line %zu has %s cells than the header's %zu",
                         r->name, r->line_number, how, r->columns);
}

/* Parses the current line into row r->rows. */
static nn_status read_row(csv_reader *r, size_t width) {
  nn_status status = reserve_row(r, width);
  if (status != NN_OK)
    return status;
  float *inputs = r->inputs + r->rows * width;
  char *cursor = r->line;
  size_t column = 0;
  for (; cursor; column++) {
    char *cell;
    double value = 0;
    if (column == r->columns)
      return ragged(r, "more");
    status = next_cell(r, column, &cursor, &cell);
    if (status == NN_OK)
      status = parse_number(r, column, cell, &value);
    if (status != NN_OK)
      return status;
    if (column == r->target)
      r->targets[r->rows] = value;
    else
      *inputs++ = (float)value;
  }
  if (column < r->columns)
    return ragged(r, "fewer");
  r->rows++;
  return NN_OK;
}

static nn_status read_rows(csv_reader *r) {
  const size_t width = r->columns - (r->target != NO_TARGET);
  if (width == 0)
    return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_SHAPE_MISMATCH, r->call,
                           "%s: the only column is the target: no inputs",
                           r->name);
  for (;;) {
    bool eof = false;
    nn_status status = next_line(r, &eof);
    if (status != NN_OK || eof)
      return status;
    status = read_row(r, width);
    if (status != NN_OK)
      return status;
  }
}

/* ------------------------------------------------------------------------ */
/* The result                                                                */
/* ------------------------------------------------------------------------ */

/* Hands the rows over as tensors (m, width) float32 and (m) float64. */
static nn_status to_tensors(csv_reader *r, nnlib_tensor *inputs,
                            nnlib_tensor *targets) {
  if (r->rows == 0)
    return NNLIB_FAIL_CALL(r->ctx, NN_ERROR_SHAPE_MISMATCH, r->call,
                           "%s: a header but no data rows: no examples",
                           r->name);
  const uint64_t shape[2] = {r->rows, r->columns - (r->target != NO_TARGET)};
  nn_status status = nnlib_tensor_set_shape(r->ctx, r->call, r->name, inputs,
                                            NNLIB_DTYPE_FLOAT32, 2, shape);
  if (status == NN_OK && r->target != NO_TARGET)
    status = nnlib_tensor_set_shape(r->ctx, r->call, r->name, targets,
                                    NNLIB_DTYPE_FLOAT64, 1, shape);
  if (status != NN_OK)
    return status;
  inputs->data = r->inputs;
  r->inputs = NULL;
  if (r->target != NO_TARGET) {
    targets->data = r->targets;
    r->targets = NULL;
  }
  return NN_OK;
}

nn_status nnlib_csv_read(nn_context *ctx, const char *call, const char *name,
                         FILE *file, const char *target_column,
                         nnlib_tensor *inputs, nnlib_tensor *targets) {
  csv_reader r = {.ctx = ctx, .call = call, .name = name, .file = file};
  nn_status status = read_header(&r, target_column);
  if (status == NN_OK)
    status = read_rows(&r);
  if (status == NN_OK)
    status = to_tensors(&r, inputs, targets);
  free(r.line);
  free(r.header);
  free(r.names);
  free(r.inputs);
  free(r.targets);
  return status;
}

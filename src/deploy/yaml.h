/* yaml: print jansson trees as block-style YAML, for `sluice manifest`.
 *
 * Manifests are built as JSON values and printed here, so there is one
 * place that knows YAML's quoting rules. The output is deliberately plain:
 * block mappings and sequences, keys in the tree's insertion order (jansson
 * keeps it), every string double-quoted with JSON escapes (a valid YAML
 * double-quoted scalar, never read as a number, boolean or null), except
 * multi-line text, which becomes a literal block (`|`) when that keeps it
 * exact. Same tree in, same bytes out. */
#ifndef SLUICE_DEPLOY_YAML_H
#define SLUICE_DEPLOY_YAML_H

#include <stdio.h>

#include <jansson.h>

/* One document, without a leading "---". 0, or -1 on a write error or a
 * value YAML cannot carry (a real that is not finite). */
int yaml_write_doc(FILE *out, const json_t *doc);

/* A YAML stream: the comment (each line prefixed "# "; NULL for none),
 * then each element of the array docs, separated by "---" lines. */
int yaml_write_stream(FILE *out, const char *comment, const json_t *docs);

#endif

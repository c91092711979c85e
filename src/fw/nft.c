/* nft: run generated scripts and read sluice's tables through libnftables. */
#include "fw/nft.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fw/ruleset.h"

/* libnftables.h defines _GNU_SOURCE itself; ours (from the command line)
 * has already done its work, so the header may define it again. */
#undef _GNU_SOURCE
#include <nftables/libnftables.h>

struct fw_nft {
    struct nft_ctx *ctx;
};

static struct nft_ctx *ctx_new(unsigned flags)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return NULL;
    if (nft_ctx_buffer_output(ctx) < 0 || nft_ctx_buffer_error(ctx) < 0) {
        nft_ctx_free(ctx);
        return NULL;
    }
    nft_ctx_output_set_flags(ctx, flags);
    return ctx;
}

struct fw_nft *fw_nft_new(void)
{
    struct fw_nft *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->ctx = ctx_new(0);
    if (!n->ctx) {
        free(n);
        return NULL;
    }
    return n;
}

void fw_nft_free(struct fw_nft *n)
{
    if (!n)
        return;
    nft_ctx_free(n->ctx);
    free(n);
}

/* nft's error text is several lines (message, the script line, a caret);
 * they are kept, with the trailing newline dropped. */
static void copy_error(struct nft_ctx *ctx, const char *fallback, char *err, size_t err_size)
{
    const char *e = nft_ctx_get_error_buffer(ctx);
    if (!e || !*e)
        e = fallback;
    snprintf(err, err_size, "%s", e);
    size_t n = strlen(err);
    while (n && (err[n - 1] == '\n' || err[n - 1] == ' '))
        err[--n] = '\0';
}

static int run_ctx(struct nft_ctx *ctx, const char *cmd, char *err, size_t err_size)
{
    if (nft_run_cmd_from_buffer(ctx, cmd) != 0) {
        copy_error(ctx, "nftables refused the transaction", err, err_size);
        return -1;
    }
    return 0;
}

int fw_nft_run(struct fw_nft *n, const char *script, char *err, size_t err_size)
{
    return run_ctx(n->ctx, script, err, err_size);
}

int fw_nft_run_script(const char *script, char *err, size_t err_size)
{
    struct nft_ctx *ctx = ctx_new(0);
    if (!ctx) {
        snprintf(err, err_size, "libnftables: cannot make a context");
        return -1;
    }
    int rc = run_ctx(ctx, script, err, err_size);
    nft_ctx_free(ctx);
    return rc;
}

int fw_nft_list(const char *cmd, bool json, char **out, char *err, size_t err_size)
{
    struct nft_ctx *ctx = ctx_new(json ? NFT_CTX_OUTPUT_JSON : 0);
    int rc = -1;
    *out = NULL;
    if (!ctx) {
        snprintf(err, err_size, "libnftables: cannot make a context");
        return -1;
    }
    if (run_ctx(ctx, cmd, err, err_size) == 0) {
        const char *o = nft_ctx_get_output_buffer(ctx);
        *out = strdup(o ? o : "");
        if (*out)
            rc = 0;
        else
            snprintf(err, err_size, "out of memory");
    }
    nft_ctx_free(ctx);
    return rc;
}

int fw_nft_probe(char *err, size_t err_size)
{
    return fw_nft_run_script("add table inet sluice_probe\ndelete table inet sluice_probe\n", err,
                             err_size);
}

/* ---- state --------------------------------------------------------------- */

static json_t *list_json(const char *cmd, unsigned flags, char *err, size_t err_size)
{
    struct nft_ctx *ctx = ctx_new(NFT_CTX_OUTPUT_JSON | flags);
    json_t *root = NULL;
    if (!ctx) {
        snprintf(err, err_size, "libnftables: cannot make a context");
        return NULL;
    }
    if (run_ctx(ctx, cmd, err, err_size) == 0) {
        json_error_t je;
        root = json_loads(nft_ctx_get_output_buffer(ctx), 0, &je);
        if (!root)
            snprintf(err, err_size, "cannot read nft's JSON: %s", je.text);
    }
    nft_ctx_free(ctx);
    return root;
}

/* Calls fn on every object of kind `kind` in {"nftables": [{kind: {...}}]}. */
static void each_object(json_t *root, const char *kind, void (*fn)(json_t *, void *), void *arg)
{
    json_t *arr = json_object_get(root, "nftables");
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item)
    {
        json_t *o = json_object_get(item, kind);
        if (json_is_object(o))
            fn(o, arg);
    }
}

static bool str_is(json_t *o, const char *key, const char *value)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && strcmp(s, value) == 0;
}

static void see_table(json_t *t, void *arg)
{
    struct fw_nft_state *st = arg;
    if (str_is(t, "family", "inet") && str_is(t, "name", FW_TABLE))
        st->table = true;
    if (str_is(t, "family", "netdev") && str_is(t, "name", FW_EGRESS_TABLE))
        st->egress = true;
}

/* nft 1.0.6 leaves table comments out of its JSON; the text has them on
 * the table's first line: `comment "sluice mode=uid ..."`. */
static void read_comment(struct fw_nft_state *st)
{
    struct nft_ctx *ctx = ctx_new(NFT_CTX_OUTPUT_TERSE);
    if (!ctx)
        return;
    if (nft_run_cmd_from_buffer(ctx, "list table inet " FW_TABLE) == 0) {
        const char *out = nft_ctx_get_output_buffer(ctx);
        const char *c = out ? strstr(out, "comment \"") : NULL;
        if (c) {
            c += strlen("comment \"");
            const char *end = strchr(c, '"');
            if (end && (size_t)(end - c) < sizeof st->comment) {
                memcpy(st->comment, c, (size_t)(end - c));
                st->comment[end - c] = '\0';
            }
        }
    }
    nft_ctx_free(ctx);
}

static void see_counter(json_t *c, void *arg)
{
    struct fw_nft_state *st = arg;
    const char *name = json_string_value(json_object_get(c, "name"));
    const char *table = json_string_value(json_object_get(c, "table"));
    if (!name || !table || st->n_counters >= FW_NFT_MAX_COUNTERS)
        return;
    struct fw_nft_counter *k = &st->counters[st->n_counters++];
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(k->table, sizeof k->table, "%s", table);
    k->packets = (uint64_t)json_integer_value(json_object_get(c, "packets"));
    k->bytes = (uint64_t)json_integer_value(json_object_get(c, "bytes"));
}

int fw_nft_state(struct fw_nft_state *st, char *err, size_t err_size)
{
    json_t *root;
    memset(st, 0, sizeof *st);
    if (!(root = list_json("list tables", 0, err, err_size)))
        return -1;
    each_object(root, "table", see_table, st);
    json_decref(root);
    if (st->table) {
        /* Terse: the table without its (possibly large) set elements. */
        if (!(root = list_json("list table inet " FW_TABLE, NFT_CTX_OUTPUT_TERSE, err, err_size)))
            return -1;
        each_object(root, "counter", see_counter, st);
        json_decref(root);
        read_comment(st);
    }
    if (st->egress) {
        if (!(root = list_json("list table netdev " FW_EGRESS_TABLE, NFT_CTX_OUTPUT_TERSE, err,
                               err_size)))
            return -1;
        each_object(root, "counter", see_counter, st);
        json_decref(root);
    }
    return 0;
}

char *fw_nft_status_json(void)
{
    struct fw_nft_state st;
    char err[FW_NFT_ERR_SIZE];
    json_t *o = json_object(), *drops = json_object();
    char *text = NULL;
    if (!o || !drops)
        goto out;
    if (fw_nft_state(&st, err, sizeof err) < 0) {
        json_object_set_new(o, "mode", json_string("unknown"));
        json_object_set_new(o, "error", json_string(err));
    } else if (!st.table && !st.egress) {
        json_object_set_new(o, "mode", json_string("none"));
    } else {
        bool isolate = strstr(st.comment, "mode=isolate") != NULL;
        json_object_set_new(o, "mode", json_string(isolate ? "isolate" : "nftables"));
        json_object_set_new(o, "rules", json_string(st.comment));
        for (size_t i = 0; i < st.n_counters; i++)
            json_object_set_new(drops, st.counters[i].name,
                                json_integer((json_int_t)st.counters[i].packets));
    }
    json_object_set(o, "drops", drops);
    text = json_dumps(o, JSON_COMPACT);
out:
    json_decref(drops);
    json_decref(o);
    return text;
}

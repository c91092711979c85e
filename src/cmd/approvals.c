/* sluice approvals | approve ID | deny ID: answer a running proxy's prompt
 * questions through its admin API (GET /approvals, POST /approvals/{id}). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmd/cmd.h"
#include "proxy/approval.h"

#define DEFAULT_URL "http://127.0.0.1:8081"
#define TOKEN_ENV "SLUICE_ADMIN_TOKEN_FILE"
#define PATH_MAX_LEN 128

#define COMMON_OPTIONS                                                                             \
    "  --admin URL    admin API address (default " DEFAULT_URL ")\n"                             \
    "  --token FILE   file holding the admin bearer token (also --admin-token;\n"                \
    "                 default: $" TOKEN_ENV ")\n"

const char cmd_approvals_help[] =
    "usage: sluice approvals [--admin URL] [--token FILE] [--json]\n"
    "\n"
    "Lists the requests a prompt rule holds until an operator answers: id,\n"
    "destination, kind, client, how many requests wait, seconds left.\n"
    "\n" COMMON_OPTIONS "  --json         print the raw JSON list\n"
    "\n"
    "Exit status: 0 ok, 1 the admin API cannot be reached or answered an error,\n"
    "2 bad usage.\n";

const char cmd_approve_help[] =
    "usage: sluice approve ID [--for-run] [--admin URL] [--token FILE]\n"
    "\n"
    "Lets the requests waiting on question ID through. With --for-run, later\n"
    "requests to the same destination go through without asking until the policy\n"
    "is reloaded.\n"
    "\n" COMMON_OPTIONS "\n"
    "Exit status: 0 answered, 1 no such question, already answered, or the admin\n"
    "API failed, 2 bad usage.\n";

const char cmd_deny_help[] =
    "usage: sluice deny ID [--admin URL] [--token FILE]\n"
    "\n"
    "Refuses the requests waiting on question ID (403). The denial is remembered\n"
    "for the destination until the policy is reloaded, so a client retrying in a\n"
    "loop does not ask again.\n"
    "\n" COMMON_OPTIONS "\n"
    "Exit status: 0 answered, 1 no such question, already answered, or the admin\n"
    "API failed, 2 bad usage.\n";

struct options {
    const char *url;
    const char *token_file;
    bool json;
    bool for_run;
    const char *id;
};

enum { OPT_ADMIN = 256, OPT_TOKEN, OPT_JSON, OPT_FOR_RUN };

/* kind: 0 approvals, 1 approve, 2 deny. */
static int parse_options(int argc, char **argv, int kind, struct options *o)
{
    static const struct option longopts[] = {
        {"admin", required_argument, NULL, OPT_ADMIN},
        {"token", required_argument, NULL, OPT_TOKEN},
        {"admin-token", required_argument, NULL, OPT_TOKEN},
        {"json", no_argument, NULL, OPT_JSON},
        {"for-run", no_argument, NULL, OPT_FOR_RUN},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof *o);
    o->url = DEFAULT_URL;
    o->token_file = getenv(TOKEN_ENV);
    if (o->token_file && *o->token_file == '\0')
        o->token_file = NULL;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == OPT_ADMIN) {
            o->url = optarg;
        } else if (c == OPT_TOKEN) {
            o->token_file = optarg;
        } else if (c == OPT_JSON && kind == 0) {
            o->json = true;
        } else if (c == OPT_FOR_RUN && kind == 1) {
            o->for_run = true;
        } else if (c == ':') {
            fprintf(stderr, "sluice %s: %s needs an argument\n", argv[0], argv[optind - 1]);
            return -1;
        } else {
            fprintf(stderr, "sluice %s: unknown option '%s'\n", argv[0], argv[optind - 1]);
            return -1;
        }
    }
    if (kind != 0) {
        if (optind >= argc) {
            fprintf(stderr, "sluice %s: which question? (sluice %s ID; `sluice approvals` lists "
                            "them)\n",
                    argv[0], argv[0]);
            return -1;
        }
        o->id = argv[optind++];
        if (!approval_id_valid(o->id)) {
            fprintf(stderr, "sluice %s: '%s' is not a question id (%d lower-case hex digits)\n",
                    argv[0], o->id, APPROVAL_ID_LEN);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice %s: unexpected argument '%s'\n", argv[0], argv[optind]);
        return -1;
    }
    return 0;
}

/* "the admin API at URL answered 404: no such approval". */
static void say_failure(const char *cmd, const char *url, int status, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    const char *msg = json_string_value(json_object_get(doc, "error"));
    char text[200];

    snprintf(text, sizeof text, "%s", msg ? msg : body);
    text[strcspn(text, "\r\n")] = '\0';
    fprintf(stderr, "sluice %s: the admin API at %s answered %d%s%s%s\n", cmd, url, status,
            text[0] ? ": " : "", text,
            status == 401 ? " (give --token FILE or set " TOKEN_ENV ")" : "");
    json_decref(doc);
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int print_table(const char *url, const char *body)
{
    json_t *list = json_loads(body, 0, NULL);
    size_t i;
    json_t *q;

    if (!json_is_array(list)) {
        fprintf(stderr, "sluice approvals: the admin API at %s answered with invalid JSON\n", url);
        json_decref(list);
        return EXIT_RUNTIME;
    }
    if (json_array_size(list) == 0) {
        printf("no requests waiting for an answer\n");
        json_decref(list);
        return 0;
    }
    printf("%-8s  %-40s  %-11s  %-15s  %7s  %s\n", "ID", "DESTINATION", "KIND", "CLIENT",
           "WAITING", "EXPIRES");
    json_array_foreach(list, i, q)
    {
        char dest[300];
        const char *method = str(q, "method");
        snprintf(dest, sizeof dest, "%s:%lld%s%s%s%s", str(q, "host"),
                 (long long)json_integer_value(json_object_get(q, "port")), method[0] ? " " : "",
                 method, method[0] ? " " : "", str(q, "path"));
        printf("%-8s  %-40s  %-11s  %-15s  %7lld  %llds\n", str(q, "id"), dest, str(q, "kind"),
               str(q, "client"), (long long)json_integer_value(json_object_get(q, "waiting")),
               (long long)json_integer_value(json_object_get(q, "expires_in")));
    }
    json_decref(list);
    return 0;
}

int cmd_approvals_main(int argc, char **argv)
{
    struct options o;
    int status = 0, rc;
    char *body = NULL;

    if (parse_options(argc, argv, 0, &o) < 0) {
        fprintf(stderr, "%s", cmd_approvals_help);
        return EXIT_USAGE;
    }
    rc = cmd_admin_request("approvals", o.url, o.token_file, "GET", "/approvals", &status, &body);
    if (rc != 0)
        return rc;
    if (status != 200) {
        say_failure("approvals", o.url, status, body);
        rc = EXIT_RUNTIME;
    } else if (o.json) {
        fputs(body, stdout);
    } else {
        rc = print_table(o.url, body);
    }
    free(body);
    return fflush(stdout) == 0 ? rc : EXIT_RUNTIME;
}

static int answer(int argc, char **argv, bool allow)
{
    struct options o;
    char path[PATH_MAX_LEN];
    int status = 0, rc;
    char *body = NULL;

    if (parse_options(argc, argv, allow ? 1 : 2, &o) < 0) {
        fprintf(stderr, "%s", allow ? cmd_approve_help : cmd_deny_help);
        return EXIT_USAGE;
    }
    snprintf(path, sizeof path, "/approvals/%s?decision=%s&scope=%s", o.id,
             allow ? "allow" : "deny", o.for_run ? "run" : "once");
    rc = cmd_admin_request(argv[0], o.url, o.token_file, "POST", path, &status, &body);
    if (rc != 0)
        return rc;
    if (status == 200) {
        printf("%s %s%s\n", allow ? "approved" : "denied", o.id,
               o.for_run ? " for this run" : allow ? " once" : " (remembered until reload)");
    } else {
        say_failure(argv[0], o.url, status, body);
        rc = EXIT_RUNTIME;
    }
    free(body);
    return fflush(stdout) == 0 ? rc : EXIT_RUNTIME;
}

int cmd_approve_main(int argc, char **argv)
{
    return answer(argc, argv, true);
}

int cmd_deny_main(int argc, char **argv)
{
    return answer(argc, argv, false);
}

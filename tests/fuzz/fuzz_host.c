/* libFuzzer harness: host canonicalisation, authorities and CIDRs.
 *
 * Beyond "does not crash", it checks the properties the rest of sluice
 * relies on: an accepted host has one canonical spelling (canonicalising it
 * again changes nothing), is lower case, within the DNS limits, and formats
 * to an authority that parses back to the same host and port. */
#include <stdint.h>
#include <string.h>

#include "policy/addr.h"
#include "policy/host.h"

/* Longer than any host or CIDR we accept, so the refusal paths run too. */
#define FUZZ_CIDR_MAX 300

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_canonical(const struct host *h)
{
    struct host again;
    const char *why = NULL;
    if (h->len != strlen(h->text) || h->len == 0 || h->len > HOST_NAME_MAX_BYTES)
        __builtin_trap();
    for (size_t i = 0; i < h->len; i++)
        if (h->text[i] >= 'A' && h->text[i] <= 'Z')
            __builtin_trap();
    if (host_canonicalise(h->text, h->len, &again, &why) != 0)
        __builtin_trap();
    if (again.kind != h->kind || strcmp(again.text, h->text) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct host h;
    const char *why = NULL;
    uint16_t port = 0;

    if (host_canonicalise(in, size, &h, &why) == 0)
        check_canonical(&h);
    else if (!why)
        __builtin_trap();

    why = NULL;
    if (host_parse_authority(in, size, 443, &h, &port, &why) == 0) {
        char buf[HOST_TEXT_SIZE + 8];
        struct host back;
        uint16_t back_port = 0;
        check_canonical(&h);
        if (port == 0 || host_format_authority(&h, port, buf, sizeof buf) != 0)
            __builtin_trap();
        if (host_parse_authority(buf, strlen(buf), 1, &back, &back_port, &why) != 0 ||
            strcmp(back.text, h.text) != 0 || back_port != port)
            __builtin_trap();
    } else if (!why) {
        __builtin_trap();
    }

    if (size < FUZZ_CIDR_MAX) {
        char text[FUZZ_CIDR_MAX];
        struct cidr c, back;
        memcpy(text, data, size);
        text[size] = '\0';
        if (cidr_parse(text, &c, &why) == 0) {
            char buf[FUZZ_CIDR_MAX];
            if (cidr_format(&c, buf, sizeof buf) != 0 || cidr_parse(buf, &back, &why) != 0 ||
                memcmp(&back, &c, sizeof c) != 0 || !cidr_within(&c, &back))
                __builtin_trap();
        }
    }
    return 0;
}

/* libFuzzer harness: the ClientHello server-name parser. */
#include <stdint.h>
#include <string.h>

#include "tls/clienthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[256];
    int r = tls_clienthello_sni(data, size, name, sizeof name);
    if (r == TLS_HELLO_SNI && strlen(name) >= sizeof name)
        __builtin_trap();
    /* A complete answer must not change when more bytes follow. */
    if (r != TLS_HELLO_NEED_MORE && size > 0) {
        uint8_t longer[TLS_HELLO_MAX_BYTES + 16];
        if (size < sizeof longer - 1) {
            memcpy(longer, data, size);
            longer[size] = 0x42;
            char again[256];
            if (tls_clienthello_sni(longer, size + 1, again, sizeof again) != r)
                __builtin_trap();
        }
    }
    return 0;
}

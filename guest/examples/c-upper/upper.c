/* A C guest on wasmlink.h: `upper` returns the ASCII uppercase of its input bytes. */
#define WASMLINK_IMPLEMENTATION
#include "wasmlink.h"

static int upper_impl(const uint8_t *in, size_t len, wasmlink_output *out) {
    uint8_t *o = wasmlink_output_alloc(out, len);
    if (!o)
        return wasmlink_fail(out, "upper: out of memory");
    for (size_t i = 0; i < len; i++)
        o[i] = (in[i] >= 'a' && in[i] <= 'z') ? (uint8_t)(in[i] - 'a' + 'A') : in[i];
    return 0;
}

WASMLINK_EXPORT_BYTES(upper, upper_impl)

/*
 * wasmlink.h: the wasmlink data-exchange ABI (version 1) for C guests. See docs/abi.md.
 *
 * In exactly ONE source file of the module:
 *
 *     #define WASMLINK_IMPLEMENTATION
 *     #include "wasmlink.h"
 *
 * That file then defines the ABI's fixed exports (wasmlink_abi_version, wasmlink_alloc,
 * wasmlink_free) and the result record. Other files include the header without the define.
 *
 * An ABI function is a C function
 *
 *     int fn(const uint8_t *in, size_t in_len, wasmlink_output *out);
 *
 * that returns 0 after filling `out` (wasmlink_output_alloc/wasmlink_output_copy), or returns
 * wasmlink_fail(out, "message"). WASMLINK_EXPORT_BYTES(name, fn) exports it as `name`.
 * `in` is only valid during the call; when in_len is 0 it must not be dereferenced.
 *
 * Build (Debian clang-19 + wasi-libc):
 *   clang-19 --target=wasm32-wasi -O2 -nostartfiles -Wl,--no-entry -I guest/include \
 *            -o upper.wasm upper.c
 * (-nostartfiles/--no-entry: a library module with no _start and no _initialize to call.)
 */
#ifndef WASMLINK_H
#define WASMLINK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WASMLINK_ABI_VERSION 1

/* Result record status values. */
#define WASMLINK_STATUS_OK 0       /* [ptr, ptr+len) is the output */
#define WASMLINK_STATUS_ERROR 1    /* [ptr, ptr+len) is a UTF-8 error message */
#define WASMLINK_STATUS_IN_PLACE 2 /* [ptr, ptr+len) is u32 LE indices of columns changed */
#define WASMLINK_STATUS_GATHERED 3 /* [ptr, ptr+len) is (u32 address, u32 length) LE segments */

/* The 16-byte result record an ABI function returns the address of (little-endian, as all of
 * wasm32). Owned by the guest; valid until the next call into the guest. The host frees
 * [ptr, ptr+cap) with wasmlink_free(ptr, cap, 1) after reading; cap 0 = nothing to free. */
typedef struct wasmlink_result {
    uint32_t status;
    uint32_t ptr;
    uint32_t len;
    uint32_t cap;
} wasmlink_result;

_Static_assert(sizeof(wasmlink_result) == 16, "the result record is 16 bytes");
_Static_assert(sizeof(void *) == 4, "wasmlink ABI v1 is for wasm32");

/* What a C ABI function fills in: a malloc'd buffer (freed by the host through wasmlink_free). */
typedef struct wasmlink_output {
    uint8_t *ptr;
    size_t len;
    int is_error;
} wasmlink_output;

/* The fixed exports, defined by the WASMLINK_IMPLEMENTATION file. */
int32_t wasmlink_abi_version(void);
uint32_t wasmlink_alloc(uint32_t size, uint32_t align);
void wasmlink_free(uint32_t ptr, uint32_t size, uint32_t align);
/* The result record (one per module). */
extern wasmlink_result wasmlink_result_record;

/* Allocates the output buffer of `len` bytes for the function to fill; NULL when out of memory. */
static inline uint8_t *wasmlink_output_alloc(wasmlink_output *out, size_t len) {
    out->ptr = (uint8_t *)malloc(len ? len : 1);
    out->len = out->ptr ? len : 0;
    out->is_error = 0;
    return out->ptr;
}

/* Sets the output to a copy of `data`; returns 0, or nonzero when out of memory. */
static inline int wasmlink_output_copy(wasmlink_output *out, const void *data, size_t len) {
    uint8_t *p = wasmlink_output_alloc(out, len);
    if (!p)
        return 1;
    if (len)
        memcpy(p, data, len);
    return 0;
}

/* Makes the call fail with `message` (status 1); returns 1, so `return wasmlink_fail(...)`. */
static inline int wasmlink_fail(wasmlink_output *out, const char *message) {
    size_t n = strlen(message);
    free(out->ptr);
    if (wasmlink_output_copy(out, message, n) != 0) {
        out->ptr = NULL;
        out->len = 0;
    }
    out->is_error = 1;
    return 1;
}

/* Publishes `out` in the result record and returns the record's address. */
static inline uint32_t wasmlink_publish(int rc, wasmlink_output *out) {
    wasmlink_result *r = &wasmlink_result_record;
    if (rc != 0 && !out->is_error)
        wasmlink_fail(out, "the function failed without a message");
    r->status = (rc != 0) ? WASMLINK_STATUS_ERROR : WASMLINK_STATUS_OK;
    if (out->ptr && out->len) {
        r->ptr = (uint32_t)(uintptr_t)out->ptr;
        r->len = (uint32_t)out->len;
        r->cap = (uint32_t)out->len; /* free() ignores the size; any non-zero cap frees it */
    } else {
        free(out->ptr);
        r->ptr = 0;
        r->len = 0;
        r->cap = 0;
    }
    return (uint32_t)(uintptr_t)r;
}

typedef int (*wasmlink_bytes_fn)(const uint8_t *in, size_t in_len, wasmlink_output *out);

/* Calls `fn` on the input region and publishes its result (what WASMLINK_EXPORT_BYTES expands to). */
static inline uint32_t wasmlink_call_bytes(uint32_t in_ptr, uint32_t in_len, wasmlink_bytes_fn fn) {
    static const uint8_t empty[1] = {0};
    wasmlink_output out = {NULL, 0, 0};
    const uint8_t *in = in_len ? (const uint8_t *)(uintptr_t)in_ptr : empty;
    int rc = fn(in, (size_t)in_len, &out);
    return wasmlink_publish(rc, &out);
}

/* The function's record in the `wasmlink.exports` custom section (docs/abi.md, "The exports
 * manifest"): "CONVENTION\tINPUT\tNAME\n"; wasm-ld concatenates the records of all objects.
 * (An assembler directive: clang puts a C variable with a section attribute into data.) */
#define WASMLINK_MANIFEST_RECORD(name, input)                                                 \
    __asm__(".section .custom_section.wasmlink.exports,\"\",@\n"                                 \
            ".ascii \"abi\\t" input "\\t" #name "\\n\"\n");

/* Exports `fn` (see the top of this file) as the ABI function `name(in_ptr, in_len) -> i32`,
 * recorded in the manifest as taking bytes. */
#define WASMLINK_EXPORT_BYTES(name, fn)                                                       \
    WASMLINK_MANIFEST_RECORD(name, "bytes")                                                   \
    __attribute__((export_name(#name))) uint32_t wasmlink_export_##name(uint32_t in_ptr,     \
                                                                         uint32_t in_len) {   \
        return wasmlink_call_bytes(in_ptr, in_len, fn);                                       \
    }

#ifdef WASMLINK_IMPLEMENTATION
wasmlink_result wasmlink_result_record;

__attribute__((export_name("wasmlink_abi_version"))) int32_t wasmlink_abi_version(void) {
    return WASMLINK_ABI_VERSION;
}

/* size 0 returns `align` (a dangling, non-null pointer); 0 on failure or a bad alignment. */
__attribute__((export_name("wasmlink_alloc"))) uint32_t wasmlink_alloc(uint32_t size,
                                                                      uint32_t align) {
    void *p = NULL;
    if (align == 0 || (align & (align - 1)) != 0)
        return 0;
    if (size == 0)
        return align;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) != 0)
        return 0;
    return (uint32_t)(uintptr_t)p;
}

/* malloc'd blocks carry their size: size and align only matter for the size-0 no-op. */
__attribute__((export_name("wasmlink_free"))) void wasmlink_free(uint32_t ptr, uint32_t size,
                                                                uint32_t align) {
    (void)align;
    if (size == 0 || ptr == 0)
        return;
    free((void *)(uintptr_t)ptr);
}
#endif /* WASMLINK_IMPLEMENTATION */

#ifdef __cplusplus
}
#endif

#endif /* WASMLINK_H */

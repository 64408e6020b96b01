/* The distinct-libraries benchmark main (issue 18 item 1): for i = 0..N-1, dlopen lib_i,
 * dlsym f_i, call it, check the result; timed inside the program, no dlclose (every library
 * stays loaded, as a program that loads its plugins keeps them).
 * Usage: main N DIR [SUFFIX [CALLS]]  (opens DIR/lib_i SUFFIX; wasmlink: DIR "" finds libraries on -L)
 * Prints: "ok N", "per_library_us X", "first_us X", "total_us X"; exit 1 on any wrong result.
 * With CALLS > 0, then CALLS calls of f_(k % N)(k) through the dlsym'ed pointers (hot code: a
 * call loop across libraries), checked against the same sum computed here: "call_ns X" per call.
 * Built three ways: gcc (native .so), emcc (MAIN_MODULE, Node), clang-19 freestanding (wasmlink). */
#ifdef DISTINCT_FREESTANDING
#include "../../tests/fixtures/c/ld_io.h"
typedef unsigned long long u64;
__attribute__((import_module("wasi_snapshot_preview1"), import_name("clock_time_get")))
int __wasi_clock_time_get(int id, u64 precision, u64 *out);
static u64 now_ns(void) { u64 t = 0; __wasi_clock_time_get(1, 1, &t); return t; }
static int parse(const char *s) { int v = 0; while (*s >= '0' && *s <= '9') v = v * 10 + (*s++ - '0'); return v; }
static void put_us(const char *label, u64 ns_total, u64 div) {
    /* label value with three decimals, in microseconds */
    u64 milli = ns_total / div; /* ns = thousandths of a us */
    char buf[96]; int i = 0, j; char tmp[24]; int n = 0;
    for (j = 0; label[j]; j++) buf[i++] = label[j];
    buf[i++] = ' ';
    u64 whole = milli / 1000, frac = milli % 1000;
    do { tmp[n++] = '0' + whole % 10; whole /= 10; } while (whole);
    while (n) buf[i++] = tmp[--n];
    buf[i++] = '.'; buf[i++] = '0' + frac / 100; buf[i++] = '0' + frac / 10 % 10; buf[i++] = '0' + frac % 10;
    buf[i] = 0;
    say(buf);
}
#define SAY_OK(n) say_int("ok", n)
#define SAY_FAIL(i) (say("FAILED library"), say_int("index", i))
#else
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef unsigned long long u64;
static u64 now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (u64)t.tv_sec * 1000000000ull + t.tv_nsec; }
static int parse(const char *s) { return atoi(s); }
static void put_us(const char *label, u64 ns_total, u64 div) { printf("%s %.3f\n", label, (double)ns_total / div / 1000.0); }
#define SAY_OK(n) printf("ok %d\n", n)
#define SAY_FAIL(i) (printf("FAILED library %d: %s\n", i, dlerror() ? dlerror() : "wrong result"))
#endif

static int expected(int i, int x) { return x * (i % 13 + 3) + (i * (x & 7) + 1) + ((x ^ (i * 7 + 85)) + i); }

static char *put_str(char *p, const char *s) { while (*s) *p++ = *s++; return p; }
static char *put_dec(char *p, int v) { char t[12]; int n = 0; do { t[n++] = '0' + v % 10; v /= 10; } while (v); while (n) *p++ = t[--n]; return p; }

int main(int argc, char **argv) {
    int n = argc > 1 ? parse(argv[1]) : 0;
    const char *dir = argc > 2 ? argv[2] : "";
    const char *suffix = argc > 3 ? argv[3] : ".so";
    if (n <= 0) { SAY_FAIL(-1); return 2; }
    int calls = argc > 4 ? parse(argv[4]) : 0;
    static int (*fs[4096])(int);
    if (n > 4096) { SAY_FAIL(-1); return 2; }
    int bad = 0;
    u64 first = 0, start = now_ns();
    for (int i = 0; i < n; i++) {
        char path[512], sym[32], *p = path;
        if (dir[0]) { p = put_str(p, dir); p = put_str(p, "/"); }
        p = put_str(p, "lib_"); p = put_dec(p, i); p = put_str(p, suffix); *p = 0;
        p = put_str(sym, "f_"); p = put_dec(p, i); *p = 0;
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        int (*f)(int) = h ? (int (*)(int))dlsym(h, sym) : 0;
        int x = i * 3 + 1;
        if (!f || f(x) != expected(i, x)) { SAY_FAIL(i); bad++; }
        fs[i] = f;
        if (i == 0) first = now_ns() - start;
    }
    u64 total = now_ns() - start;
    if (bad) return 1;
    SAY_OK(n);
    put_us("per_library_us", total, (u64)n);
    put_us("first_us", first, 1);
    put_us("total_us", total, 1);
    if (calls > 0) {
        unsigned acc = 0, want = 0;
        u64 t0 = now_ns();
        for (int k = 0, i = 0; k < calls; k++) {
            acc += (unsigned)fs[i](k);
            if (++i == n) i = 0;
        }
        u64 spent = now_ns() - t0;
        for (int k = 0, i = 0; k < calls; k++) {
            want += (unsigned)expected(i, k);
            if (++i == n) i = 0;
        }
        if (acc != want) { SAY_FAIL(-2); return 1; }
        /* ns per call with three decimals: put_us divides by 1000 */
        put_us("call_ns", spent * 1000, (u64)calls);
    }
    return 0;
}

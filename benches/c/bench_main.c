// The benchmark's main program (PIE). Needs libbench.so (NEEDED), so `lib_inc` is bound
// directly at load: the library is instantiated before this module.

int lib_inc(int x);

// Exported (--export-dynamic); libbench.so reaches it through a thunk.
int main_inc(int x) { return x + 1; }

// The baseline: an identical callee in the same module, never inlined.
static __attribute__((noinline)) int local_inc(int x) { return x + 1; }

int bench_local(int n) {
    int x = 0;
    _Pragma("clang loop unroll(disable)") for (int i = 0; i < n; i++) x = local_inc(x);
    return x;
}

int bench_cross(int n) {
    int x = 0;
    _Pragma("clang loop unroll(disable)") for (int i = 0; i < n; i++) x = lib_inc(x);
    return x;
}

// A call through a function pointer the compiler cannot see through: one call_indirect, the
// cost a thunk adds on top of a direct import call.
int (*volatile bench_fp)(int) = local_inc;

int bench_indirect(int n) {
    int (*f)(int) = bench_fp;
    int x = 0;
    _Pragma("clang loop unroll(disable)") for (int i = 0; i < n; i++) x = f(x);
    return x;
}

int main(void) { return 0; }

// libbench.so: the callee of the cross-library loop, and a loop whose callee is bound lazily.
//
// The benchmark's main program (bench_main.c) needs this library, so this library is
// instantiated first. Its import of `main_inc` (defined by the main program, which is not
// instantiated yet) is therefore bound through a call_indirect thunk, while the main
// program's import of `lib_inc` is bound directly to this library's export.

// Called from bench_main.c's `bench_cross` through a directly bound import.
int lib_inc(int x) { return x + 1; }

// Defined by the main program; bound through a thunk.
int main_inc(int x);

int bench_lazy(int n) {
    int x = 0;
    _Pragma("clang loop unroll(disable)") for (int i = 0; i < n; i++) x = main_inc(x);
    return x;
}

// Same loop with a callee inside this library: the baseline for `bench_lazy`.
static __attribute__((noinline)) int lib_local_inc(int x) { return x + 1; }

int bench_lib_local(int n) {
    int x = 0;
    _Pragma("clang loop unroll(disable)") for (int i = 0; i < n; i++) x = lib_local_inc(x);
    return x;
}

// A call through a function pointer to the main program's `main_inc` (its canonical table
// slot, from GOT.func): the same call_indirect the thunk makes, without the hop through the
// thunk module. Separates the thunk's two costs.
int (*volatile lib_fp)(int) = main_inc;

int bench_lib_indirect(int n) {
    int (*f)(int) = lib_fp;
    int x = 0;
    _Pragma("clang loop unroll(disable)") for (int i = 0; i < n; i++) x = f(x);
    return x;
}

// A small library for the dlopen benchmark, compiled both to wasm (clang-19, dylink.0) and
// natively (gcc -shared -fPIC -O2): one data object, a pointer needing a data relocation, a
// constructor and two functions.

int small_counter = 1000;
int *small_ptr = &small_counter;
static int small_ready;

__attribute__((constructor)) static void small_init(void) { small_ready = 1; }

int small_fn(int x) { return x * 3 + *small_ptr + small_ready; }

int small_twice(int x) { return small_fn(small_fn(x)); }

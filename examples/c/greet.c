/* libgreet.so: a shared library with data and a constructor. */
static char buf[64];
static const char *prefix = "hello, ";
static int ready;
__attribute__((constructor)) static void init(void) { ready = 1; }
const char *greet(const char *who) {
    int i = 0, j = 0;
    if (!ready) return "constructor did not run";
    while (prefix[j] && i < 62) buf[i++] = prefix[j++];
    for (j = 0; who[j] && i < 62; j++) buf[i++] = who[j];
    buf[i] = 0;
    return buf;
}

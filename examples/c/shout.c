/* libshout.so: loaded with dlopen, upper-cases a string. */
static char out[64];
const char *shout(const char *s) {
    int i = 0;
    for (; s[i] && i < 63; i++) out[i] = (s[i] >= 'a' && s[i] <= 'z') ? s[i] - 32 : s[i];
    out[i] = 0;
    return out;
}

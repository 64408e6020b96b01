/* A program split into a main program and two libraries: libgreet.so is linked (NEEDED),
 * libshout.so is dlopen'ed at run time. Build and run: see README.md or scripts/demo-linker.sh. */
typedef struct { const char *buf; unsigned long len; } ciovec;
__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write")))
int fd_write(int fd, const ciovec *iov, int iovcnt, int *written);
void *dlopen(const char *, int);
void *dlsym(void *, const char *);
int dlclose(void *);
char *dlerror(void);

extern const char *greet(const char *who);   /* from libgreet.so */

static void put(const char *s) {
    unsigned long n = 0; int w;
    while (s[n]) n++;
    ciovec v = {s, n}, nl = {"\n", 1};
    fd_write(1, &v, 1, &w);
    fd_write(1, &nl, 1, &w);
}

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "world";
    put(greet(who));
    void *h = dlopen("libshout.so", 2 /* RTLD_NOW */);
    if (!h) { put(dlerror()); return 1; }
    const char *(*shout)(const char *) = (const char *(*)(const char *))dlsym(h, "shout");
    put(shout(greet(who)));
    dlclose(h);
    return 0;
}

/* A program that calls its plugin library directly and through a function pointer. */
extern int plugin_version(void);
extern int plugin_score(int);
int (*volatile score_fp)(int) = plugin_score;
int app_version(void) { return plugin_version(); }
int app_score(int x) { return score_fp(x); }
int main(void) { return 0; }

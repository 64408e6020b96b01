/* libplugin.so, version 2: same interface, new behaviour. */
int plugin_version(void) { return 2; }
int plugin_score(int x) { return x * 10; }

/* libplugin.so, version 1 of a plugin the host can swap while running. */
int plugin_version(void) { return 1; }
int plugin_score(int x) { return x + 1; }

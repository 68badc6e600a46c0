/* A shared object that is not a Panthera plugin: no px_plugin_info. */
__attribute__((visibility("default"))) int no_descriptor_here(void);
int no_descriptor_here(void)
{
    return 42;
}

/* kintsugictl.c - placeholder until the CLI lands (issue 8). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("kintsugictl %s\n", KS_VERSION);
        return 0;
    }
    fprintf(stderr, "kintsugictl: not available in this build\n");
    return 2;
}

/* main.c — the samebits command: dispatches to subcommands. */
#include "diff.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits <command> [options]\n"
            "\n"
            "commands:\n"
            "  diff A.safetensors B.safetensors   compare two checkpoints tensor by tensor\n"
            "  inspect FILE.safetensors           header, metadata and per-tensor stats\n"
            "\n"
            "Run 'samebits <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "diff")) return sb_cmd_diff(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return sb_cmd_inspect(argc - 1, argv + 1);
    fprintf(stderr, "samebits: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}

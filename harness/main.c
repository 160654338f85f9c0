/* main.c — the samebits command: dispatches to subcommands.
 *
 * Not here: any logic; each subcommand lives in its own harness/cmd_*.c (or
 * baseline.c / bench.c) and returns the process exit code (harness.h).
 */
#include "harness.h"
#include "report.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: samebits <command> [options]\n"
            "\n"
            "commands:\n"
            "  run SUITE.json       run a suite's matrix, evaluate its checks, print the verdict\n"
            "  train SUITE.json     train one run (what each of run's child processes does)\n"
            "  diff A B             compare two safetensors files tensor by tensor\n"
            "  inspect FILE         header, metadata and per-tensor stats of a safetensors file\n"
            "  trace-diff A B       where two runs' traces part ways: first divergence, sources\n"
            "  bless SUITE.json     write the suite's baselines\n"
            "  report RESULTS_DIR   (re)write junit.xml, report.html and report.md of a results folder\n"
            "  bench                training steps/s of the reference MLPs\n"
            "  env                  the environment fingerprint (what can change bits), warnings first\n"
            "  data export SUITE    write the exact batches a run trains on (safetensors)\n"
            "\n"
            "Run 'samebits <command> --help' for a command's options.\n"
            "exit: 0 pass, 1 drift (a check failed), 2 bad input or usage, 3 a run failed\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("samebits %s\n", SB_VERSION_STRING);
        return 0;
    }
    if (!strcmp(cmd, "run")) return sb_cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return sb_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "diff")) return sb_cmd_diff(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return sb_cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "trace-diff")) return sb_cmd_trace_diff(argc - 1, argv + 1);
    if (!strcmp(cmd, "bless")) return sb_cmd_bless(argc - 1, argv + 1);
    if (!strcmp(cmd, "report")) return sb_cmd_report(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return sb_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "env")) return sb_cmd_env(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return sb_cmd_data(argc - 1, argv + 1);
    fprintf(stderr, "samebits: unknown command '%s'\n", cmd);
    usage(stderr);
    return SB_EXIT_USAGE;
}

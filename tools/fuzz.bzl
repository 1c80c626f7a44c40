"""mc_fuzz_test: one fuzz target, built as a bounded smoke test or as a libFuzzer binary.

By default (gcc) the target links //mooncake/common:fuzz_driver and is a cc_test tagged `fuzz`:
it replays the built-in seeds and the on-disk corpus (`fuzz_corpus/<name>/` beside the BUILD file,
where every crash found is kept as a regression input) and runs `runs` seeded mutations.
With --config=libfuzzer (clang; tools/fuzz) the same target links libFuzzer instead, for long
coverage-guided runs. See docs/testing.md "Fuzzing".
"""

def mc_fuzz_test(name, srcs, deps = [], runs = 200000, max_len = 4096, size = "small", **kwargs):
    corpus = native.glob(["fuzz_corpus/%s/**" % name])
    args = ["-runs=%d" % runs, "-max_len=%d" % max_len]
    if corpus:
        args.append("%s/fuzz_corpus/%s" % (native.package_name(), name))
    native.cc_test(
        name = name,
        srcs = srcs,
        deps = deps + ["//mooncake/common:fuzz_target"] + select({
            "//tools:libfuzzer": ["//mooncake/common:libfuzzer_seeds"],
            "//conditions:default": ["//mooncake/common:fuzz_driver"],
        }),
        linkopts = select({
            "//tools:libfuzzer": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
        data = corpus,
        args = args,
        size = size,
        tags = ["fuzz"] + kwargs.pop("tags", []),
        **kwargs
    )

// fuzz_target.h: what a fuzz target (`*_fuzz.cc`, built by mc_fuzz_test in tools/fuzz.bzl) uses.
//
// A target defines the libFuzzer entry point, and may define seeds built from the real encoders:
//
//   extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
//     auto frame = DecodeFrame(absl::string_view(reinterpret_cast<const char*>(data), size));
//     if (frame.ok()) MC_FUZZ_CHECK(Encode(*frame) == input);  // a property, not only "no crash"
//     return 0;
//   }
//   MC_FUZZ_SEEDS(seeds) { seeds->push_back(Encode(SomeFrame())); }
//
// The same source builds two ways (docs/testing.md "Fuzzing"):
//   - by default (gcc), linked with fuzz_driver.cc: the bounded smoke run in the suite (tag
//   `fuzz`),
//     which replays the seeds and the on-disk corpus, then runs -runs=N seeded mutations;
//   - with --config=libfuzzer (clang, tools/fuzz): coverage-guided libFuzzer for the long runs.
#ifndef MOONCAKE_COMMON_FUZZ_TARGET_H_
#define MOONCAKE_COMMON_FUZZ_TARGET_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

// MC_FUZZ_CHECK aborts (a finding, like a crash) when a property of the code under test fails.
#define MC_FUZZ_CHECK(cond)                                                                   \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "MC_FUZZ_CHECK failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

// MC_FUZZ_SEEDS(out) { ... } defines the target's built-in seeds (valid messages from the real
// encoders). Both drivers add them to the corpus before mutating.
#define MC_FUZZ_SEEDS(out) extern "C" void MooncakeFuzzSeeds(std::vector<std::string>* out)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" void MooncakeFuzzSeeds(std::vector<std::string>* out) __attribute__((weak));

#endif  // MOONCAKE_COMMON_FUZZ_TARGET_H_

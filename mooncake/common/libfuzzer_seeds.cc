// libfuzzer_seeds: in the libFuzzer build (--config=libfuzzer), writes the target's built-in
// seeds (MooncakeFuzzSeeds) into the first corpus directory on the command line before fuzzing
// starts, so libFuzzer begins from valid messages as fuzz_driver.cc does.
#include <sys/stat.h>

#include <fstream>

#include "mooncake/common/fuzz_target.h"

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  if (MooncakeFuzzSeeds == nullptr) return 0;
  for (int i = 1; i < *argc; ++i) {
    const char* arg = (*argv)[i];
    struct stat st;
    if (arg[0] == '-' || stat(arg, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    std::vector<std::string> seeds;
    MooncakeFuzzSeeds(&seeds);
    for (size_t n = 0; n < seeds.size(); ++n) {
      std::ofstream(std::string(arg) + "/builtin-seed-" + std::to_string(n), std::ios::binary)
          << seeds[n];
    }
    break;
  }
  return 0;
}

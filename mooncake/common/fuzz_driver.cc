// fuzz_driver: the main() of a fuzz target built without libFuzzer (gcc, the normal suite).
//
// It takes libFuzzer's own flag syntax, so one test rule runs under either driver:
//   <target> [-runs=N] [-seed=S] [-max_len=L] [corpus dir or file]...
// It runs every built-in seed (MooncakeFuzzSeeds) and every corpus file once, then N inputs made by
// seeded mutations of them (bit flips, interesting bytes, inserts, deletes, duplicated ranges,
// splices). Not coverage-guided: that is the libFuzzer build's job (tools/fuzz); this run catches
// regressions on every commit and, under --config=asan, memory errors near the seeds.
//
// A crash or failed MC_FUZZ_CHECK writes the input to crash-<n> in $TEST_UNDECLARED_OUTPUTS_DIR
// (or the working directory) and prints it in hex, so it can be added to the corpus as a
// regression seed.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mooncake/common/fuzz_target.h"
#include "mooncake/common/rng.h"

namespace {

// The input being run, for the crash handler. Set before every call.
const std::string* g_current = nullptr;

void WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n <= 0) return;
    data += n;
    size -= static_cast<size_t>(n);
  }
}

// OnCrash saves the current input (async-signal-safe calls only), then re-raises.
void OnCrash(int sig) {
  if (g_current != nullptr) {
    char path[512];
    const char* dir = getenv("TEST_UNDECLARED_OUTPUTS_DIR");
    snprintf(path, sizeof(path), "%s/crash-%d", dir != nullptr ? dir : ".",
             static_cast<int>(getpid()));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      WriteAll(fd, g_current->data(), g_current->size());
      close(fd);
    }
    static const char kHex[] = "0123456789abcdef";
    const char head[] = "\nfuzz_driver: crashing input (hex): ";
    WriteAll(2, head, sizeof(head) - 1);
    size_t shown = std::min<size_t>(g_current->size(), 4096);
    for (size_t i = 0; i < shown; ++i) {
      char byte[2] = {kHex[(static_cast<unsigned char>((*g_current)[i]) >> 4)],
                      kHex[static_cast<unsigned char>((*g_current)[i]) & 15]};
      WriteAll(2, byte, 2);
    }
    const char tail[] = "\nfuzz_driver: saved as ";
    WriteAll(2, tail, sizeof(tail) - 1);
    WriteAll(2, path, strlen(path));
    WriteAll(2, "\n", 1);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

// AddCorpus adds a file, or every regular file in a directory (sorted, for a stable order).
void AddCorpus(const std::string& path, std::vector<std::string>* corpus) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    fprintf(stderr, "fuzz_driver: no such corpus path %s\n", path.c_str());
    exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    std::string data;
    if (ReadFile(path, &data)) corpus->push_back(std::move(data));
    return;
  }
  std::vector<std::string> names;
  if (DIR* dir = opendir(path.c_str())) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') names.push_back(entry->d_name);
    }
    closedir(dir);
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) AddCorpus(path + "/" + name, corpus);
}

// Mutate applies 1-4 random edits, keeping the result at most max_len bytes.
std::string Mutate(const std::vector<std::string>& corpus, mooncake::Rng& rng, size_t max_len) {
  std::string s = corpus[rng.Uniform(corpus.size())];
  static const uint8_t kInteresting[] = {0,    1,    0x7f, 0x80, 0xff, 0xfe,
                                         '\r', '\n', ':',  ' ',  '0',  '9'};
  const int edits = 1 + static_cast<int>(rng.Uniform(4));
  for (int e = 0; e < edits; ++e) {
    const size_t pos = s.empty() ? 0 : rng.Uniform(s.size());
    switch (rng.Uniform(8)) {
      case 0:  // flip a bit
        if (!s.empty()) s[pos] = static_cast<char>(s[pos] ^ (1 << rng.Uniform(8)));
        break;
      case 1:  // an interesting byte
        if (!s.empty()) s[pos] = static_cast<char>(kInteresting[rng.Uniform(sizeof(kInteresting))]);
        break;
      case 2:  // a random byte
        if (!s.empty()) s[pos] = static_cast<char>(rng.Uniform(256));
        break;
      case 3: {  // insert random bytes
        std::string extra(1 + rng.Uniform(8), '\0');
        for (char& c : extra) c = static_cast<char>(rng.Uniform(256));
        s.insert(std::min(pos, s.size()), extra);
        break;
      }
      case 4:  // delete a range
        if (!s.empty()) s.erase(pos, 1 + rng.Uniform(std::min<size_t>(16, s.size() - pos)));
        break;
      case 5:  // duplicate a range
        if (!s.empty()) s.insert(pos, s.substr(pos, 1 + rng.Uniform(16)));
        break;
      case 6: {  // a 32-bit boundary value (little-endian), as lengths and counts are
        static const uint32_t kWords[] = {0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x10000, 4096};
        uint32_t w = kWords[rng.Uniform(sizeof(kWords) / sizeof(kWords[0]))];
        if (s.size() >= 4) memcpy(&s[rng.Uniform(s.size() - 3)], &w, 4);
        break;
      }
      case 7: {  // splice with another input
        const std::string& other = corpus[rng.Uniform(corpus.size())];
        s = s.substr(0, pos) + other.substr(other.empty() ? 0 : rng.Uniform(other.size()));
        break;
      }
    }
  }
  if (s.size() > max_len) s.resize(max_len);
  return s;
}

void Run(const std::string& input) {
  g_current = &input;
  // A copy in its own allocation, so reads past the end hit the sanitizer's redzone.
  std::vector<uint8_t> bytes(input.begin(), input.end());
  LLVMFuzzerTestOneInput(bytes.empty() ? nullptr : bytes.data(), bytes.size());
  g_current = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  long runs = 10000;
  uint64_t seed = 1;
  size_t max_len = 4096;
  std::vector<std::string> corpus;
  if (MooncakeFuzzSeeds != nullptr) MooncakeFuzzSeeds(&corpus);
  const size_t builtin = corpus.size();
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("-runs=", 0) == 0) {
      runs = std::stol(arg.substr(6));
    } else if (arg.rfind("-seed=", 0) == 0) {
      seed = std::stoull(arg.substr(6));
    } else if (arg.rfind("-max_len=", 0) == 0) {
      max_len = std::stoul(arg.substr(9));
    } else if (arg[0] == '-') {
      fprintf(stderr, "fuzz_driver: ignoring libFuzzer flag %s\n", arg.c_str());
    } else {
      AddCorpus(arg, &corpus);
    }
  }
  if (corpus.empty()) corpus.push_back(std::string());
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) signal(sig, OnCrash);

  const auto start = std::chrono::steady_clock::now();
  for (const std::string& input : corpus) Run(input);
  mooncake::Rng rng(seed);
  for (long i = 0; i < runs; ++i) {
    Run(Mutate(corpus, rng, max_len));
    if ((i + 1) % 100000 == 0) fprintf(stderr, "fuzz_driver: %ld / %ld mutations\n", i + 1, runs);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf(
      "fuzz_driver: %zu seeds (%zu built in) and %ld mutations (seed %llu) in %.2f s, no crash\n",
      corpus.size(), builtin, runs, static_cast<unsigned long long>(seed), secs);
  return 0;
}

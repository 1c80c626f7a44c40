#include "mooncake/transfer/host_id.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace mooncake {

const std::string& LocalHostId() {
  static const std::string* id = [] {
    std::string boot;
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::getline(in, boot);
    boot = std::string(absl::StripAsciiWhitespace(boot));
    if (boot.empty()) {
      char host[256] = {0};
      gethostname(host, sizeof(host) - 1);
      boot = host;
    }
    struct stat st;
    uint64_t netns = stat("/proc/self/ns/net", &st) == 0 ? st.st_ino : 0;
    return new std::string(absl::StrCat(boot, "/", netns));
  }();
  return *id;
}

}  // namespace mooncake

#include "sim/verbs/world.h"

#include "mooncake/common/logging.h"

namespace sim {

World::World(uint64_t seed) : World(WorldOptions{seed, NetworkOptions(), SimVerbsOptions()}) {}

World::World(const WorldOptions& options)
    : sim_(options.seed),
      network_(&sim_, options.network),
      fabric_(&sim_, &network_, options.verbs) {}

HostId World::AddHost(const std::string& name, const std::vector<std::string>& nics,
                      const NicSpec& nic_template) {
  const HostId host = network_.AddHost(name);
  for (const std::string& nic_name : nics) {
    NicSpec spec = nic_template;
    spec.name = nic_name;
    network_.AddNic(host, spec);
  }
  fabric_.ForHost(host);
  return host;
}

SimVerbs* World::verbs(const std::string& host_name) {
  const HostId host = network_.FindHost(host_name);
  MC_CHECK(host != kNoId) << "no host " << host_name;
  return fabric_.ForHost(host);
}

}  // namespace sim

// HostId: identifies "the same host" for shared memory. Two processes can map each other's memfds
// when they run on one kernel and share a network namespace (so they can reach each other's
// abstract unix sockets). IP addresses do not identify hosts: many processes share 127.0.0.1, and
// one host has many addresses.
#ifndef MOONCAKE_TRANSFER_HOST_ID_H_
#define MOONCAKE_TRANSFER_HOST_ID_H_

#include <string>

namespace mooncake {

// LocalHostId returns "<boot_id>/<netns inode>" for this process; stable for the process lifetime.
const std::string& LocalHostId();

}  // namespace mooncake

#endif  // MOONCAKE_TRANSFER_HOST_ID_H_

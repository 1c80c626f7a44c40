// Test support shared by the tests of every package (one place, not copied into each test).
#ifndef MOONCAKE_COMMON_TEST_UTIL_H_
#define MOONCAKE_COMMON_TEST_UTIL_H_

namespace mooncake {

// UnusedLoopbackPort returns a 127.0.0.1 port that was free a moment ago (bound, then released).
// Another process could take it in between; tests that can bind port 0 themselves should.
int UnusedLoopbackPort();

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_TEST_UTIL_H_

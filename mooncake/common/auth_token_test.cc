#include "mooncake/common/auth_token.h"

#include <cstdlib>

#include "gtest/gtest.h"
#include "mooncake/common/error_code.h"

namespace mooncake {
namespace {

TEST(AuthTokenTest, EmptyExpectedAcceptsAnything) {
  EXPECT_TRUE(AuthTokenMatches("", ""));
  EXPECT_TRUE(AuthTokenMatches("", "whatever"));
}

TEST(AuthTokenTest, OnlyTheExactTokenMatches) {
  EXPECT_TRUE(AuthTokenMatches("s3cret", "s3cret"));
  EXPECT_FALSE(AuthTokenMatches("s3cret", ""));
  EXPECT_FALSE(AuthTokenMatches("s3cret", "s3cre"));
  EXPECT_FALSE(AuthTokenMatches("s3cret", "s3cret!"));
  EXPECT_FALSE(AuthTokenMatches("s3cret", "S3cret"));
  EXPECT_FALSE(AuthTokenMatches("s3cret", std::string("s3cret\0", 7)));
}

TEST(AuthTokenTest, EnvIsValidated) {
  unsetenv(kAuthTokenEnv);
  EXPECT_EQ(AuthTokenFromEnv().value(), "");
  setenv(kAuthTokenEnv, "abc-123_XYZ", 1);
  EXPECT_EQ(AuthTokenFromEnv().value(), "abc-123_XYZ");
  for (const char* bad : {"has space", "tab\there", "newline\n"}) {
    setenv(kAuthTokenEnv, bad, 1);
    absl::StatusOr<std::string> t = AuthTokenFromEnv();
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_EQ(ToErrorCode(t.status()), ErrorCode::INVALID_PARAMS);
    EXPECT_NE(t.status().message().find(kAuthTokenEnv), absl::string_view::npos);
  }
  setenv(kAuthTokenEnv, std::string(kMaxAuthTokenBytes + 1, 'a').c_str(), 1);
  EXPECT_FALSE(AuthTokenFromEnv().ok());
  unsetenv(kAuthTokenEnv);
}

TEST(AuthTokenTest, RefusalNamesServerAndVariable) {
  absl::Status s = AuthRefused("tcp data server 10.0.0.1:1234");
  EXPECT_EQ(ToErrorCode(s), ErrorCode::INVALID_PARAMS);
  EXPECT_NE(s.message().find("10.0.0.1:1234"), absl::string_view::npos);
  EXPECT_NE(s.message().find("MC_AUTH_TOKEN"), absl::string_view::npos);
}

}  // namespace
}  // namespace mooncake

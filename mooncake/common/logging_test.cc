#include "mooncake/common/logging.h"

#include <vector>

#include "gtest/gtest.h"

namespace mooncake {
namespace {

class LoggingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSink([this](LogLevel level, const std::string& line) {
      levels_.push_back(level);
      lines_.push_back(line);
    });
  }
  void TearDown() override {
    SetLogSink(nullptr);
    SetMinLogLevel(LogLevel::INFO);
  }
  std::vector<LogLevel> levels_;
  std::vector<std::string> lines_;
};

TEST_F(LoggingTest, WritesAtOrAboveTheMinimumLevel) {
  SetMinLogLevel(LogLevel::WARNING);
  MC_LOG(INFO) << "hidden";
  MC_LOG(WARNING) << "shown " << 42;
  MC_LOG(ERROR) << "also shown";
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(levels_[0], LogLevel::WARNING);
  EXPECT_NE(lines_[0].find("shown 42\n"), std::string::npos);
  EXPECT_EQ(lines_[0][0], 'W');
  EXPECT_NE(lines_[0].find("logging_test.cc:"), std::string::npos);
}

TEST_F(LoggingTest, DisabledMessagesAreNotEvaluated) {
  SetMinLogLevel(LogLevel::INFO);
  int calls = 0;
  auto expensive = [&] { return ++calls; };
  MC_LOG(DEBUG) << expensive();
  EXPECT_EQ(calls, 0);
  SetMinLogLevel(LogLevel::DEBUG);
  MC_LOG(DEBUG) << expensive();
  EXPECT_EQ(calls, 1);
}

TEST_F(LoggingTest, WorksInsideIfElseWithoutBraces) {
  bool flag = false;
  if (flag)
    MC_LOG(INFO) << "then";
  else
    MC_LOG(INFO) << "else";
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_NE(lines_[0].find("else"), std::string::npos);
}

TEST(LogLevelTest, Parse) {
  LogLevel level = LogLevel::INFO;
  EXPECT_TRUE(ParseLogLevel("DEBUG", &level));
  EXPECT_EQ(level, LogLevel::DEBUG);
  EXPECT_TRUE(ParseLogLevel("warn", &level));
  EXPECT_EQ(level, LogLevel::WARNING);
  EXPECT_FALSE(ParseLogLevel("loud", &level));
  EXPECT_EQ(level, LogLevel::WARNING);
}

TEST(CheckDeathTest, FailedCheckAbortsWithTheCondition) {
  EXPECT_DEATH(MC_CHECK(1 + 1 == 3) << "math", "Check failed: 1 \\+ 1 == 3 math");
}

}  // namespace
}  // namespace mooncake

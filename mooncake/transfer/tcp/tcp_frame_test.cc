#include "mooncake/transfer/tcp/tcp_frame.h"

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(TcpFrameTest, ValidHeadersPass) {
  FrameHeader h;
  h.op = FrameOp::kWrite;
  h.length = FrameHeader::kMaxPayload;
  EXPECT_TRUE(h.Validate().ok());
  h.op = FrameOp::kRead;
  EXPECT_TRUE(h.Validate().ok());
  h.op = FrameOp::kGetDescriptor;
  h.length = 0;
  EXPECT_TRUE(h.Validate().ok());
}

TEST(TcpFrameTest, RejectsBadMagicVersionOpcodeAndOversizedPayloads) {
  FrameHeader h;
  h.magic = 0xdeadbeef;
  EXPECT_FALSE(h.Validate().ok());
  h = FrameHeader();
  h.version = 9;
  EXPECT_FALSE(h.Validate().ok());
  h = FrameHeader();
  h.op = static_cast<FrameOp>(77);
  EXPECT_FALSE(h.Validate().ok());
  h = FrameHeader();
  h.length = FrameHeader::kMaxPayload + 1;
  EXPECT_FALSE(h.Validate().ok());
  h.op = FrameOp::kRead;
  EXPECT_FALSE(h.Validate().ok());
  h.op = FrameOp::kGetDescriptor;
  h.length = 1;
  EXPECT_FALSE(h.Validate().ok());
  h.op = FrameOp::kWriteAck;
  h.length = FrameHeader::kMaxControlPayload + 1;
  EXPECT_FALSE(h.Validate().ok());
}

}  // namespace
}  // namespace mooncake

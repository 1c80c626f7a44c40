#include "mooncake/common/error_code.h"

#include "gtest/gtest.h"

namespace mooncake {
namespace {

TEST(ErrorCodeTest, NumericValuesMatchMooncake) {
  // SGLang and Mooncake users compare against these integers.
  EXPECT_EQ(static_cast<int>(ErrorCode::INTERNAL_ERROR), -1);
  EXPECT_EQ(static_cast<int>(ErrorCode::BUFFER_OVERFLOW), -10);
  EXPECT_EQ(static_cast<int>(ErrorCode::SEGMENT_NOT_FOUND), -101);
  EXPECT_EQ(static_cast<int>(ErrorCode::NO_AVAILABLE_HANDLE), -200);
  EXPECT_EQ(static_cast<int>(ErrorCode::INVALID_KEY), -400);
  EXPECT_EQ(static_cast<int>(ErrorCode::INVALID_PARAMS), -600);
  EXPECT_EQ(static_cast<int>(ErrorCode::OBJECT_NOT_FOUND), -704);
  EXPECT_EQ(static_cast<int>(ErrorCode::OBJECT_ALREADY_EXISTS), -705);
  EXPECT_EQ(static_cast<int>(ErrorCode::OBJECT_HAS_LEASE), -706);
  EXPECT_EQ(static_cast<int>(ErrorCode::LEASE_EXPIRED), -707);
  EXPECT_EQ(static_cast<int>(ErrorCode::TRANSFER_FAIL), -800);
  EXPECT_EQ(static_cast<int>(ErrorCode::RPC_FAIL), -900);
  EXPECT_EQ(static_cast<int>(ErrorCode::RPC_TIMEOUT), -901);
  EXPECT_EQ(static_cast<int>(ErrorCode::ETCD_OPERATION_ERROR), -1000);
  EXPECT_EQ(static_cast<int>(ErrorCode::NOT_SUPPORTED), -1012);
}

TEST(ErrorCodeTest, EveryCodeRoundTripsThroughStatus) {
  for (int v = -2000; v <= 0; ++v) {
    std::optional<ErrorCode> code = ErrorCodeFromInt(v);
    if (!code.has_value() || *code == ErrorCode::OK) continue;
    absl::Status s = MakeError(*code, "boom");
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.message(), "boom");
    EXPECT_EQ(ToErrorCode(s), *code) << ErrorCodeName(*code);
    EXPECT_EQ(ToPythonCode(s), v);
  }
}

TEST(ErrorCodeTest, CodesSharingACanonicalCodeStayDistinct) {
  // SEGMENT_NOT_FOUND and OBJECT_NOT_FOUND are both kNotFound; the payload keeps them apart.
  absl::Status seg = MakeError(ErrorCode::SEGMENT_NOT_FOUND, "seg");
  absl::Status obj = MakeError(ErrorCode::OBJECT_NOT_FOUND, "obj");
  EXPECT_EQ(seg.code(), obj.code());
  EXPECT_EQ(ToErrorCode(seg), ErrorCode::SEGMENT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(obj), ErrorCode::OBJECT_NOT_FOUND);
}

TEST(ErrorCodeTest, PlainStatusesMapByCanonicalCode) {
  EXPECT_EQ(ToErrorCode(absl::OkStatus()), ErrorCode::OK);
  EXPECT_EQ(ToErrorCode(absl::NotFoundError("x")), ErrorCode::OBJECT_NOT_FOUND);
  EXPECT_EQ(ToErrorCode(absl::InvalidArgumentError("x")), ErrorCode::INVALID_PARAMS);
  EXPECT_EQ(ToErrorCode(absl::DeadlineExceededError("x")), ErrorCode::RPC_TIMEOUT);
  EXPECT_EQ(ToErrorCode(absl::UnavailableError("x")), ErrorCode::RPC_FAIL);
  EXPECT_EQ(ToErrorCode(absl::ResourceExhaustedError("x")), ErrorCode::NO_AVAILABLE_HANDLE);
  EXPECT_EQ(ToErrorCode(absl::UnknownError("x")), ErrorCode::INTERNAL_ERROR);
}

TEST(ErrorCodeTest, MakeErrorNeverReturnsOk) {
  absl::Status s = MakeError(ErrorCode::OK, "not an error");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ToErrorCode(s), ErrorCode::INTERNAL_ERROR);
}

TEST(ErrorCodeTest, NamesAndUnknownValues) {
  EXPECT_STREQ(ErrorCodeName(ErrorCode::LEASE_EXPIRED), "LEASE_EXPIRED");
  EXPECT_STREQ(ErrorCodeName(static_cast<ErrorCode>(-12345)), "UNKNOWN_ERROR_CODE");
  EXPECT_FALSE(ErrorCodeFromInt(-12345).has_value());
  EXPECT_EQ(ErrorCodeFromInt(-707), ErrorCode::LEASE_EXPIRED);
}

}  // namespace
}  // namespace mooncake

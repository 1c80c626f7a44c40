#include "mooncake/common/error_code.h"

#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace mooncake {
namespace {

// Payload URL under which MakeError stores the exact code, as a decimal string.
constexpr absl::string_view kPayloadUrl = "type.mooncake/error_code";

struct CodeInfo {
  ErrorCode code;
  const char* name;
  absl::StatusCode canonical;
};

constexpr CodeInfo kCodes[] = {
    {ErrorCode::OK, "OK", absl::StatusCode::kOk},
    {ErrorCode::INTERNAL_ERROR, "INTERNAL_ERROR", absl::StatusCode::kInternal},
    {ErrorCode::BUFFER_OVERFLOW, "BUFFER_OVERFLOW", absl::StatusCode::kOutOfRange},
    {ErrorCode::SEGMENT_NOT_FOUND, "SEGMENT_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::SEGMENT_ALREADY_EXISTS, "SEGMENT_ALREADY_EXISTS", absl::StatusCode::kAlreadyExists},
    {ErrorCode::CLIENT_NOT_FOUND, "CLIENT_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::NO_AVAILABLE_HANDLE, "NO_AVAILABLE_HANDLE", absl::StatusCode::kResourceExhausted},
    {ErrorCode::INVALID_KEY, "INVALID_KEY", absl::StatusCode::kInvalidArgument},
    {ErrorCode::WRITE_FAIL, "WRITE_FAIL", absl::StatusCode::kInternal},
    {ErrorCode::INVALID_PARAMS, "INVALID_PARAMS", absl::StatusCode::kInvalidArgument},
    {ErrorCode::INVALID_WRITE, "INVALID_WRITE", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::INVALID_READ, "INVALID_READ", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::INVALID_REPLICA, "INVALID_REPLICA", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::REPLICA_IS_NOT_READY, "REPLICA_IS_NOT_READY", absl::StatusCode::kUnavailable},
    {ErrorCode::OBJECT_NOT_FOUND, "OBJECT_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::OBJECT_ALREADY_EXISTS, "OBJECT_ALREADY_EXISTS", absl::StatusCode::kAlreadyExists},
    {ErrorCode::OBJECT_HAS_LEASE, "OBJECT_HAS_LEASE", absl::StatusCode::kFailedPrecondition},
    {ErrorCode::LEASE_EXPIRED, "LEASE_EXPIRED", absl::StatusCode::kAborted},
    {ErrorCode::TRANSFER_FAIL, "TRANSFER_FAIL", absl::StatusCode::kUnavailable},
    {ErrorCode::CHECKSUM_MISMATCH, "CHECKSUM_MISMATCH", absl::StatusCode::kDataLoss},
    {ErrorCode::RPC_FAIL, "RPC_FAIL", absl::StatusCode::kUnavailable},
    {ErrorCode::RPC_TIMEOUT, "RPC_TIMEOUT", absl::StatusCode::kDeadlineExceeded},
    {ErrorCode::ETCD_OPERATION_ERROR, "ETCD_OPERATION_ERROR", absl::StatusCode::kUnavailable},
    {ErrorCode::ETCD_TRANSACTION_FAIL, "ETCD_TRANSACTION_FAIL", absl::StatusCode::kAborted},
    {ErrorCode::UNAVAILABLE_IN_CURRENT_STATUS, "UNAVAILABLE_IN_CURRENT_STATUS",
     absl::StatusCode::kUnavailable},
    {ErrorCode::NOT_SUPPORTED, "NOT_SUPPORTED", absl::StatusCode::kUnimplemented},
    {ErrorCode::FILE_NOT_FOUND, "FILE_NOT_FOUND", absl::StatusCode::kNotFound},
    {ErrorCode::FILE_OPEN_FAIL, "FILE_OPEN_FAIL", absl::StatusCode::kUnavailable},
    {ErrorCode::FILE_READ_FAIL, "FILE_READ_FAIL", absl::StatusCode::kDataLoss},
    {ErrorCode::FILE_WRITE_FAIL, "FILE_WRITE_FAIL", absl::StatusCode::kResourceExhausted},
};

const CodeInfo* Find(ErrorCode code) {
  for (const CodeInfo& info : kCodes) {
    if (info.code == code) return &info;
  }
  return nullptr;
}

// Used only for statuses that did not come from MakeError (gRPC, libraries).
ErrorCode FromCanonical(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return ErrorCode::OK;
    case absl::StatusCode::kNotFound:
      return ErrorCode::OBJECT_NOT_FOUND;
    case absl::StatusCode::kInvalidArgument:
      return ErrorCode::INVALID_PARAMS;
    case absl::StatusCode::kAlreadyExists:
      return ErrorCode::OBJECT_ALREADY_EXISTS;
    case absl::StatusCode::kResourceExhausted:
      return ErrorCode::NO_AVAILABLE_HANDLE;
    case absl::StatusCode::kDeadlineExceeded:
      return ErrorCode::RPC_TIMEOUT;
    case absl::StatusCode::kUnavailable:
      return ErrorCode::RPC_FAIL;
    case absl::StatusCode::kUnimplemented:
      return ErrorCode::NOT_SUPPORTED;
    case absl::StatusCode::kDataLoss:
      return ErrorCode::CHECKSUM_MISMATCH;
    case absl::StatusCode::kOutOfRange:
      return ErrorCode::BUFFER_OVERFLOW;
    default:
      return ErrorCode::INTERNAL_ERROR;
  }
}

}  // namespace

const char* ErrorCodeName(ErrorCode code) {
  const CodeInfo* info = Find(code);
  return info ? info->name : "UNKNOWN_ERROR_CODE";
}

std::optional<ErrorCode> ErrorCodeFromInt(int64_t value) {
  for (const CodeInfo& info : kCodes) {
    if (static_cast<int64_t>(info.code) == value) return info.code;
  }
  return std::nullopt;
}

absl::StatusCode CanonicalCode(ErrorCode code) {
  const CodeInfo* info = Find(code);
  return info ? info->canonical : absl::StatusCode::kInternal;
}

absl::Status MakeError(ErrorCode code, absl::string_view message) {
  if (code == ErrorCode::OK || Find(code) == nullptr) code = ErrorCode::INTERNAL_ERROR;
  absl::Status status(CanonicalCode(code), message);
  status.SetPayload(kPayloadUrl, absl::Cord(std::to_string(static_cast<int>(code))));
  return status;
}

ErrorCode ToErrorCode(const absl::Status& status) {
  if (status.ok()) return ErrorCode::OK;
  auto payload = status.GetPayload(kPayloadUrl);
  if (payload.has_value()) {
    int64_t value = 0;
    if (absl::SimpleAtoi(std::string(*payload), &value)) {
      std::optional<ErrorCode> code = ErrorCodeFromInt(value);
      if (code.has_value() && *code != ErrorCode::OK) return *code;
    }
  }
  return FromCanonical(status.code());
}

namespace {
constexpr char kUnsettledPayload[] = "mooncake.transfer/unsettled-write";
}  // namespace

absl::Status MarkUnsettledWrite(absl::Status failed) {
  if (!failed.ok()) failed.SetPayload(kUnsettledPayload, absl::Cord("1"));
  return failed;
}

bool IsUnsettledWrite(const absl::Status& status) {
  return !status.ok() && status.GetPayload(kUnsettledPayload).has_value();
}

}  // namespace mooncake

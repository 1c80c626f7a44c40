// ErrorCode: Mooncake's numeric error codes, as SGLang and other Python callers see them, and their
// mapping to and from absl::Status.
//
// Inside the project every fallible call returns absl::Status / absl::StatusOr. A status made with
// MakeError() carries its exact ErrorCode as a payload, so the code survives any number of hops
// (RPC adapters included) and ToErrorCode() recovers it. A status without the payload (from gRPC or
// a library) is mapped from its canonical code.
//
//   absl::Status s = MakeError(ErrorCode::OBJECT_NOT_FOUND, "key 'a' not found");
//   int py = static_cast<int>(ToErrorCode(s));  // -704
#ifndef MOONCAKE_COMMON_ERROR_CODE_H_
#define MOONCAKE_COMMON_ERROR_CODE_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mooncake {

// ErrorCode values are part of the Python contract (docs/compatibility.md section 4): never
// renumber.
enum class ErrorCode : int32_t {
  OK = 0,
  INTERNAL_ERROR = -1,
  BUFFER_OVERFLOW = -10,
  SEGMENT_NOT_FOUND = -101,
  SEGMENT_ALREADY_EXISTS = -102,
  CLIENT_NOT_FOUND = -103,
  NO_AVAILABLE_HANDLE = -200,
  INVALID_KEY = -400,
  WRITE_FAIL = -500,
  INVALID_PARAMS = -600,
  INVALID_WRITE = -700,
  INVALID_READ = -701,
  INVALID_REPLICA = -702,
  REPLICA_IS_NOT_READY = -703,
  OBJECT_NOT_FOUND = -704,
  OBJECT_ALREADY_EXISTS = -705,
  OBJECT_HAS_LEASE = -706,
  LEASE_EXPIRED = -707,
  TRANSFER_FAIL = -800,
  CHECKSUM_MISMATCH = -801,
  RPC_FAIL = -900,
  RPC_TIMEOUT = -901,
  ETCD_OPERATION_ERROR = -1000,
  ETCD_TRANSACTION_FAIL = -1002,
  // A standby master (high availability): only the leader serves.
  UNAVAILABLE_IN_CURRENT_STATUS = -1010,
  NOT_SUPPORTED = -1012,
  // The SSD tier (mooncake/disk).
  FILE_NOT_FOUND = -1100,
  FILE_OPEN_FAIL = -1101,
  FILE_READ_FAIL = -1102,
  FILE_WRITE_FAIL = -1103,
};

// ErrorCodeName returns the enumerator's name ("OBJECT_NOT_FOUND"), or "UNKNOWN_ERROR_CODE".
const char* ErrorCodeName(ErrorCode code);

// ErrorCodeFromInt returns the ErrorCode with that numeric value, or nullopt if there is none.
std::optional<ErrorCode> ErrorCodeFromInt(int64_t value);

// CanonicalCode is the absl::StatusCode an ErrorCode maps to (OK -> kOk).
absl::StatusCode CanonicalCode(ErrorCode code);

// MakeError returns a non-OK status that carries `code` exactly. `code` must not be OK; if it is,
// the result is INTERNAL_ERROR, because an error constructor that returns OK hides bugs.
absl::Status MakeError(ErrorCode code, absl::string_view message);

// ToErrorCode recovers the ErrorCode of a status: its payload if it has one, else a mapping of its
// canonical code. OK maps to OK.
ErrorCode ToErrorCode(const absl::Status& status);

// MarkUnsettledWrite tags a failed WRITE whose bytes may still land at its target later (the
// target could not be told to drop them: see transfer/tcp/tcp_transport.h); IsUnsettledWrite
// tells. Whoever owns the target range must not hand it to anyone else until such writes are
// known to be over (the store revokes such a put into quarantine).
absl::Status MarkUnsettledWrite(absl::Status failed);
bool IsUnsettledWrite(const absl::Status& status);

// ToPythonCode is the int a Python method returns for `status` (0 or a negative ErrorCode).
inline int ToPythonCode(const absl::Status& status) {
  return static_cast<int>(ToErrorCode(status));
}

}  // namespace mooncake

#endif  // MOONCAKE_COMMON_ERROR_CODE_H_

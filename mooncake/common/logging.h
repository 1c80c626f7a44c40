// Logging with levels, usable from every component (Debian's abseil predates absl/log).
//
//   MC_LOG(INFO) << "mounted segment " << name << " (" << FormatByteSize(size) << ")";
//   MC_LOG(DEBUG) << "slice " << id;   // off unless MC_LOG_LEVEL=debug
//   MC_CHECK(ptr != nullptr) << "no buffer";  // logs and aborts when false
//
// The minimum level comes from MC_LOG_LEVEL (debug, info, warning, error; default info) and can be
// changed with SetMinLogLevel. Each message is written to stderr with one write(2), so lines from
// different threads and processes do not interleave.
#ifndef MOONCAKE_COMMON_LOGGING_H_
#define MOONCAKE_COMMON_LOGGING_H_

#include <functional>
#include <sstream>
#include <string>

#include "absl/strings/string_view.h"

namespace mooncake {

enum class LogLevel { DEBUG = 0, INFO = 1, WARNING = 2, ERROR = 3, FATAL = 4 };

// SetMinLogLevel sets the lowest level that is written. FATAL is always written.
void SetMinLogLevel(LogLevel level);
LogLevel MinLogLevel();

// ParseLogLevel reads "debug", "INFO", "warn", "warning", "error" (any case).
bool ParseLogLevel(absl::string_view text, LogLevel* level);

// SetLogSink replaces the output (for tests); nullptr restores stderr. Not for hot paths.
void SetLogSink(std::function<void(LogLevel, const std::string& line)> sink);

namespace logging_internal {

// LogMessage collects one message and emits it on destruction; FATAL aborts afterwards.
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};

// Voidify lets MC_LOG be used as an expression statement in an if/else.
struct Voidify {
  void operator&(std::ostream&) {}
};

inline bool Enabled(LogLevel level) { return level >= MinLogLevel(); }

}  // namespace logging_internal
}  // namespace mooncake

#define MC_LOG(level)                                                                       \
  !::mooncake::logging_internal::Enabled(::mooncake::LogLevel::level)                       \
      ? (void)0                                                                             \
      : ::mooncake::logging_internal::Voidify() &                                           \
            ::mooncake::logging_internal::LogMessage(::mooncake::LogLevel::level, __FILE__, \
                                                     __LINE__)                              \
                .stream()

#define MC_CHECK(cond)                                                                         \
  (cond) ? (void)0                                                                             \
         : ::mooncake::logging_internal::Voidify() &                                           \
               ::mooncake::logging_internal::LogMessage(::mooncake::LogLevel::FATAL, __FILE__, \
                                                        __LINE__)                              \
                       .stream()                                                               \
                   << "Check failed: " #cond " "

#endif  // MOONCAKE_COMMON_LOGGING_H_

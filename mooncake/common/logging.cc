#include "mooncake/common/logging.h"

#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "absl/strings/ascii.h"

namespace mooncake {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv("MC_LOG_LEVEL");
  LogLevel level = LogLevel::INFO;
  if (env != nullptr) ParseLogLevel(env, &level);
  return level;
}

std::atomic<int>& MinLevel() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

std::mutex& SinkMutex() {
  static std::mutex* mu = new std::mutex();
  return *mu;
}

std::function<void(LogLevel, const std::string&)>*& Sink() {
  static std::function<void(LogLevel, const std::string&)>* sink = nullptr;
  return sink;
}

std::atomic<bool> g_has_sink{false};

const char* Basename(const char* path) {
  const char* slash = nullptr;
  for (const char* p = path; *p; ++p) {
    if (*p == '/') slash = p;
  }
  return slash ? slash + 1 : path;
}

}  // namespace

void SetMinLogLevel(LogLevel level) { MinLevel().store(static_cast<int>(level)); }

LogLevel MinLogLevel() { return static_cast<LogLevel>(MinLevel().load(std::memory_order_relaxed)); }

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  std::string t = absl::AsciiStrToLower(text);
  if (t == "debug") {
    *level = LogLevel::DEBUG;
  } else if (t == "info") {
    *level = LogLevel::INFO;
  } else if (t == "warn" || t == "warning") {
    *level = LogLevel::WARNING;
  } else if (t == "error") {
    *level = LogLevel::ERROR;
  } else {
    return false;
  }
  return true;
}

void SetLogSink(std::function<void(LogLevel, const std::string&)> sink) {
  std::lock_guard<std::mutex> lock(SinkMutex());
  delete Sink();
  Sink() = sink ? new std::function<void(LogLevel, const std::string&)>(std::move(sink)) : nullptr;
  g_has_sink.store(Sink() != nullptr);
}

namespace logging_internal {

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  static constexpr char kLetters[] = "DIWEF";
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  localtime_r(&tv.tv_sec, &t);
  char prefix[96];
  snprintf(prefix, sizeof(prefix), "%c%02d%02d %02d:%02d:%02d.%06ld %ld %s:%d] ",
           kLetters[static_cast<int>(level)], t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min,
           t.tm_sec, static_cast<long>(tv.tv_usec), static_cast<long>(syscall(SYS_gettid)),
           Basename(file), line);
  stream_ << prefix;
}

LogMessage::~LogMessage() {
  std::string text = stream_.str();
  text.push_back('\n');
  if (g_has_sink.load()) {
    std::lock_guard<std::mutex> lock(SinkMutex());
    if (Sink() != nullptr) (*Sink())(level_, text);
  } else {
    // One write per message keeps lines whole across threads and processes.
    size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::write(STDERR_FILENO, text.data() + off, text.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
  }
  if (level_ == LogLevel::FATAL) std::abort();
}

}  // namespace logging_internal
}  // namespace mooncake

#include "mooncake/metadata/http_metadata_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/logging.h"
#include "mooncake/metadata/http_request_parser.h"
#include "mooncake/metadata/metadata_store.h"
#include "mooncake/net/host_port.h"
#include "mooncake/net/memory_budget.h"

namespace mooncake::metadata {
namespace {

constexpr size_t kReadChunkBytes = 64 << 10;
// Reads per readiness event, so one fast sender cannot monopolize the loop.
constexpr int kReadsPerEvent = 16;
constexpr int kMaxEventsPerWait = 64;
// How often deadlines are checked; bounds how late a timeout fires.
constexpr int kTickMillis = 100;
// After the last response on a closing connection, input is drained this long so that the
// client reads the response instead of a reset (lingering close).
constexpr absl::Duration kLingerTimeout = absl::Seconds(2);
constexpr int kListenBacklog = 1024;
constexpr size_t kMaxHeaderBytes = 64 << 10;

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    case 507:
      return "Insufficient Storage";
    default:
      return "Unknown";
  }
}

std::string ErrnoText(int err) { return std::strerror(err); }

std::string PeerName(const sockaddr_storage& addr) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    port = ntohs(in6->sin6_port);
  }
  return FormatHostPort(ip, port);
}

// A response waiting to be sent: the head, then a body that may be shared with the store.
struct OutputItem {
  std::string head;
  std::shared_ptr<const std::string> body;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain";
  std::shared_ptr<const std::string> body;
  std::string extra_headers;  // complete "Name: value\r\n" lines
  bool head_only = false;     // answer to HEAD: Content-Length of the body, but no body
};

Response TextResponse(int status, std::string text) {
  Response r;
  r.status = status;
  if (!text.empty() && text.back() != '\n') text.push_back('\n');
  r.body = std::make_shared<const std::string>(std::move(text));
  return r;
}

// Connection is one client socket. Owned and touched only by the loop thread.
struct Connection {
  Connection(int fd, std::string peer, HttpParseLimits limits, MemoryBudget* budget)
      : fd(fd), peer(std::move(peer)), parser(limits), held(budget) {}

  const int fd;
  const std::string peer;
  HttpRequestParser parser;
  std::string input;               // received bytes not yet given to the parser
  std::deque<OutputItem> output;   // responses not yet fully sent
  size_t output_offset = 0;        // bytes of output.front() already sent (head, then body)
  bool close_after_write = false;  // close once output is sent (error, or client asked)
  bool lingering = false;          // write side shut; draining input until EOF or timeout
  bool peer_eof = false;           // the client shut its write side
  bool sent_continue = false;      // "100 Continue" already sent for the current request
  uint32_t interest = 0;           // events registered with epoll
  absl::Time last_activity;        // last byte received or sent
  absl::Time request_start;        // first byte of the request being read
  absl::Time linger_start;
  // The bytes of the request body being received, charged to the server's in-flight budget.
  MemoryBudget::Reservation held;
};

}  // namespace

class HttpMetadataServer::Impl {
 public:
  explicit Impl(HttpMetadataServerOptions options)
      : options_(std::move(options)),
        store_(options_.max_keys, options_.max_total_bytes),
        inflight_(options_.max_inflight_bytes) {}

  ~Impl() { Stop(); }

  absl::Status Start() ABSL_LOCKS_EXCLUDED(lifecycle_mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(lifecycle_mu_);
  int port() const { return port_.load(std::memory_order_acquire); }

  uint64_t auth_refusals() const { return auth_refusals_.load(); }

 private:
  absl::Status Bind();
  void Run();
  void Accept();
  void OnEvent(Connection* c, uint32_t events);
  void ReadInput(Connection* c);
  // Advance flushes output, parses and answers buffered requests, and starts closing when due.
  void Advance(Connection* c);
  // ParseInput feeds buffered input to the parser until one response is queued or input runs out.
  void ParseInput(Connection* c);
  bool Flush(Connection* c);  // false if the connection failed and was closed
  void Queue(Connection* c, const Response& r, bool keep_alive);
  void StartLinger(Connection* c);
  void UpdateInterest(Connection* c);
  void Close(Connection* c);
  void SweepTimeouts();
  bool EvictOldestIdle();
  Response Handle(HttpRequest request);
  absl::Time Now() const { return clock_->Now(); }

  const HttpMetadataServerOptions options_;  // constant after construction
  Clock* const clock_ = RealClock::Get();
  MetadataStore store_;
  MemoryBudget inflight_;

  absl::Mutex lifecycle_mu_;
  bool started_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(lifecycle_mu_) = false;
  std::thread loop_thread_ ABSL_GUARDED_BY(lifecycle_mu_);

  std::atomic<int> port_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> auth_refusals_{0};

  // Set in Start before the loop thread starts; closed in Stop after it has ended.
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  int spare_fd_ = -1;  // released to accept-and-close a connection when out of descriptors

  // Loop thread only.
  absl::flat_hash_map<int, std::unique_ptr<Connection>> connections_;
  absl::Time last_sweep_;
};

absl::Status HttpMetadataServer::Impl::Bind() {
  std::string host = options_.host;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string where = FormatHostPort(host, options_.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* results = nullptr;
  std::string service = std::to_string(options_.port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &results);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat("HTTP metadata server: cannot resolve host '",
                                                   options_.host, "': ", gai_strerror(rc)));
  }
  std::string last_error = "no usable address";
  for (addrinfo* ai = results; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = ErrnoText(errno);
      continue;
    }
    // SO_REUSEADDR only lets us rebind over TIME_WAIT remnants; unlike SO_REUSEPORT it does not
    // let a second live server share the port.
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, kListenBacklog) != 0) {
      int err = errno;
      last_error = err == EADDRINUSE
                       ? "address already in use (another metadata server or mooncake_master?)"
                       : ErrnoText(err);
      close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    int port = bound.ss_family == AF_INET6
                   ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                   : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    listen_fd_ = fd;
    port_.store(port, std::memory_order_release);
    freeaddrinfo(results);
    return absl::OkStatus();
  }
  freeaddrinfo(results);
  return absl::UnavailableError(
      absl::StrCat("HTTP metadata server: cannot listen on ", where, ": ", last_error));
}

absl::Status HttpMetadataServer::Impl::Start() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(
        "HTTP metadata server: Start after Start or Stop (a server starts once)");
  }
  if (options_.port < 0 || options_.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("HTTP metadata server: port ", options_.port, " is out of range 0..65535"));
  }
  if (options_.max_body_bytes == 0 || options_.max_keys == 0 || options_.max_connections == 0) {
    return absl::InvalidArgumentError(
        "HTTP metadata server: max_body_bytes, max_keys and max_connections must be positive");
  }
  absl::Status bound = Bind();
  if (!bound.ok()) return bound;

  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    std::string err = ErrnoText(errno);
    for (int* fd : {&listen_fd_, &epoll_fd_, &wake_fd_, &spare_fd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
    port_.store(0);
    return absl::InternalError(absl::StrCat("HTTP metadata server: epoll setup failed: ", err));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);

  started_ = true;
  last_sweep_ = Now();
  loop_thread_ = std::thread([this] { Run(); });
  MC_LOG(INFO) << "HTTP metadata server listening on http://"
               << FormatHostPort(options_.host, port()) << "/metadata";
  return absl::OkStatus();
}

void HttpMetadataServer::Impl::Stop() {
  absl::MutexLock lock(&lifecycle_mu_);
  if (!started_ || stopped_) {
    stopped_ = true;
    return;
  }
  stopped_ = true;
  stopping_.store(true);
  uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // The loop also checks stopping_ every tick.
  }
  loop_thread_.join();
  for (int* fd : {&listen_fd_, &epoll_fd_, &wake_fd_, &spare_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
  MC_LOG(INFO) << "HTTP metadata server on port " << port() << " stopped";
}

void HttpMetadataServer::Impl::Run() {
  epoll_event events[kMaxEventsPerWait];
  while (!stopping_.load()) {
    int n = epoll_wait(epoll_fd_, events, kMaxEventsPerWait, kTickMillis);
    if (n < 0) {
      if (errno == EINTR) continue;
      MC_LOG(ERROR) << "HTTP metadata server: epoll_wait failed: " << ErrnoText(errno);
      break;
    }
    bool accept_ready = false;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == listen_fd_) {
        accept_ready = true;
      } else if (fd == wake_fd_) {
        uint64_t value;
        while (read(wake_fd_, &value, sizeof(value)) > 0) {
        }
      } else {
        // A connection closed earlier in this batch is gone from the map; skip its event.
        auto it = connections_.find(fd);
        if (it != connections_.end()) OnEvent(it->second.get(), events[i].events);
      }
    }
    // Accept after the batch: a new connection may reuse the descriptor number of one closed in
    // this batch, and must not receive that connection's stale events.
    if (accept_ready) Accept();
    if (Now() - last_sweep_ >= absl::Milliseconds(kTickMillis)) SweepTimeouts();
  }
  while (!connections_.empty()) Close(connections_.begin()->second.get());
}

void HttpMetadataServer::Impl::Accept() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd =
        accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      if ((err == EMFILE || err == ENFILE) && spare_fd_ >= 0) {
        // Out of descriptors: accept with the spare one and close at once, so the pending
        // connection does not keep the listener readable (a busy loop) and the client learns.
        close(spare_fd_);
        int victim = accept(listen_fd_, nullptr, nullptr);
        if (victim >= 0) close(victim);
        spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
        MC_LOG(WARNING) << "HTTP metadata server: out of file descriptors, refused a connection";
        continue;
      }
      if (err != EAGAIN && err != EWOULDBLOCK) {
        MC_LOG(WARNING) << "HTTP metadata server: accept failed: " << ErrnoText(err);
      }
      return;
    }
    if (connections_.size() >= options_.max_connections && !EvictOldestIdle()) {
      static constexpr char kBusy[] =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
          "Connection: close\r\n\r\ntoo many connections\n";
      // Best effort: a fresh socket's send buffer holds this.
      if (send(fd, kBusy, sizeof(kBusy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
      }
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    HttpParseLimits limits;
    limits.max_header_bytes = kMaxHeaderBytes;
    limits.max_body_bytes = options_.max_body_bytes;
    auto conn = std::make_unique<Connection>(fd, PeerName(addr), limits, &inflight_);
    conn->last_activity = Now();
    conn->interest = EPOLLIN;
    epoll_event ev{};
    ev.events = conn->interest;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      continue;
    }
    connections_[fd] = std::move(conn);
  }
}

bool HttpMetadataServer::Impl::EvictOldestIdle() {
  Connection* oldest = nullptr;
  for (const auto& [fd, c] : connections_) {
    bool idle = !c->parser.started() && c->input.empty() && c->output.empty() && !c->lingering;
    if (idle && (oldest == nullptr || c->last_activity < oldest->last_activity)) oldest = c.get();
  }
  if (oldest == nullptr) return false;
  MC_LOG(DEBUG) << "HTTP metadata server: connection limit reached, closing idle " << oldest->peer;
  Close(oldest);
  return true;
}

void HttpMetadataServer::Impl::OnEvent(Connection* c, uint32_t events) {
  const int fd = c->fd;
  if (events & EPOLLERR) {
    Close(c);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP)) {
    ReadInput(c);
    if (connections_.find(fd) == connections_.end()) return;
  }
  Advance(c);
  if (connections_.find(fd) == connections_.end()) return;
  UpdateInterest(c);
}

void HttpMetadataServer::Impl::ReadInput(Connection* c) {
  char buf[kReadChunkBytes];
  const int fd = c->fd;
  for (int i = 0; i < kReadsPerEvent; ++i) {
    // While a response is pending, leave further input in the socket: backpressure bounds the
    // bytes buffered per connection to one read chunk plus the request being parsed.
    if (!c->lingering && (!c->output.empty() || c->close_after_write || !c->input.empty())) {
      return;
    }
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      c->last_activity = Now();
      if (c->lingering) continue;  // discarded
      c->input.append(buf, static_cast<size_t>(n));
      Advance(c);
      if (connections_.find(fd) == connections_.end()) return;
      continue;
    }
    if (n == 0) {
      if (c->lingering) {
        Close(c);
      } else {
        c->peer_eof = true;
      }
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) Close(c);
    return;
  }
}

void HttpMetadataServer::Impl::Advance(Connection* c) {
  for (;;) {
    if (c->lingering) return;
    if (!c->output.empty()) {
      if (!Flush(c)) return;           // closed
      if (!c->output.empty()) return;  // wait for EPOLLOUT
    }
    if (c->close_after_write) {
      StartLinger(c);
      return;
    }
    if (!c->input.empty()) {
      ParseInput(c);
      if (!c->output.empty() || c->close_after_write) continue;
    }
    if (c->peer_eof) {
      if (c->parser.started()) {
        Queue(c, TextResponse(400, "request truncated: the connection closed mid-request"),
              /*keep_alive=*/false);
        continue;
      }
      Close(c);
      return;
    }
    return;
  }
}

void HttpMetadataServer::Impl::ParseInput(Connection* c) {
  absl::string_view input = c->input;
  size_t offset = 0;
  while (offset < input.size()) {
    if (!c->parser.started()) c->request_start = Now();
    size_t used = c->parser.Feed(input.substr(offset));
    offset += used;
    HttpRequestParser::State state = c->parser.state();
    if (state == HttpRequestParser::State::kComplete) {
      HttpRequest request = c->parser.TakeRequest();
      // A client that half-closed still gets answers to every request it sent; Advance closes
      // once its input is used up.
      bool keep_alive = request.keep_alive;
      bool head = request.method == "HEAD";
      MC_LOG(DEBUG) << "HTTP metadata server: " << c->peer << " " << request.method << " "
                    << request.target;
      Response response = Handle(std::move(request));
      response.head_only = head;
      Queue(c, response, keep_alive);
      break;
    }
    if (state == HttpRequestParser::State::kError) {
      MC_LOG(DEBUG) << "HTTP metadata server: bad request from " << c->peer << ": "
                    << c->parser.error_status() << " " << c->parser.error_message();
      Queue(c, TextResponse(c->parser.error_status(), c->parser.error_message()),
            /*keep_alive=*/false);
      offset = input.size();  // the rest of the stream cannot be framed
      break;
    }
    if (used == 0) break;  // defensive: the parser always consumes while it needs bytes
  }
  c->input.erase(0, offset);
  // Charge the body received so far; past the server's budget the request is refused.
  const size_t receiving =
      c->parser.state() == HttpRequestParser::State::kBody ? c->parser.request().body.size() : 0;
  if (receiving == 0) {
    c->held.Reset();
  } else if (receiving > c->held.bytes() && !c->held.Grow(receiving - c->held.bytes())) {
    c->held.Reset();
    Queue(c,
          TextResponse(503, "metadata server busy: too many request bytes in flight; retry later"),
          /*keep_alive=*/false);
    return;
  }
  // Interim "100 Continue": the client waits for it before sending a body it announced.
  if (c->parser.state() == HttpRequestParser::State::kBody && c->parser.request().expect_continue &&
      c->parser.request().body.empty() && !c->sent_continue) {
    c->sent_continue = true;
    c->output.push_back(OutputItem{"HTTP/1.1 100 Continue\r\n\r\n", nullptr});
  }
}

void HttpMetadataServer::Impl::Queue(Connection* c, const Response& r, bool keep_alive) {
  size_t body_size = r.body ? r.body->size() : 0;
  std::string head = absl::StrFormat(
      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n%s\r\n",
      r.status, ReasonPhrase(r.status), r.content_type, body_size,
      keep_alive ? "keep-alive" : "close", r.extra_headers);
  c->output.push_back(OutputItem{std::move(head), r.head_only ? nullptr : r.body});
  c->sent_continue = false;
  if (!keep_alive) c->close_after_write = true;
}

bool HttpMetadataServer::Impl::Flush(Connection* c) {
  while (!c->output.empty()) {
    OutputItem& item = c->output.front();
    const size_t head_size = item.head.size();
    const size_t body_size = item.body ? item.body->size() : 0;
    iovec iov[2];
    int iov_count = 0;
    if (c->output_offset < head_size) {
      iov[iov_count++] = {const_cast<char*>(item.head.data()) + c->output_offset,
                          head_size - c->output_offset};
    }
    size_t body_offset = c->output_offset > head_size ? c->output_offset - head_size : 0;
    if (body_size > body_offset) {
      iov[iov_count++] = {const_cast<char*>(item.body->data()) + body_offset,
                          body_size - body_offset};
    }
    if (iov_count == 0) {
      c->output.pop_front();
      c->output_offset = 0;
      continue;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = iov_count;
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);  // never SIGPIPE on a closed peer
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      Close(c);
      return false;
    }
    c->last_activity = Now();
    c->output_offset += static_cast<size_t>(n);
    if (c->output_offset >= head_size + body_size) {
      c->output.pop_front();
      c->output_offset = 0;
    }
  }
  return true;
}

void HttpMetadataServer::Impl::StartLinger(Connection* c) {
  shutdown(c->fd, SHUT_WR);
  c->lingering = true;
  c->linger_start = Now();
  c->input.clear();
  if (c->peer_eof) Close(c);
}

void HttpMetadataServer::Impl::UpdateInterest(Connection* c) {
  uint32_t want = 0;
  if (c->lingering) {
    want = EPOLLIN;
  } else if (!c->output.empty()) {
    want = EPOLLOUT;
  } else if (!c->close_after_write && !c->peer_eof) {
    want = EPOLLIN;
  }
  if (want == c->interest) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.fd = c->fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev) != 0) {
    Close(c);
    return;
  }
  c->interest = want;
}

void HttpMetadataServer::Impl::Close(Connection* c) {
  const int fd = c->fd;
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  close(fd);
  connections_.erase(fd);  // destroys *c
}

void HttpMetadataServer::Impl::SweepTimeouts() {
  const absl::Time now = Now();
  last_sweep_ = now;
  std::vector<int> expired;
  for (const auto& [fd, c] : connections_) {
    absl::Time deadline;
    if (c->lingering) {
      deadline = c->linger_start + kLingerTimeout;
    } else if (!c->output.empty()) {
      deadline = c->last_activity + options_.request_timeout;
    } else if (c->parser.started() || !c->input.empty()) {
      deadline = c->request_start + options_.request_timeout;
    } else {
      deadline = c->last_activity + options_.idle_timeout;
    }
    if (now >= deadline) expired.push_back(fd);
  }
  for (int fd : expired) {
    Connection* c = connections_[fd].get();
    if (!c->lingering && c->output.empty() && c->parser.started()) {
      // A request that did not arrive in time: say so, then close.
      MC_LOG(DEBUG) << "HTTP metadata server: request from " << c->peer << " timed out";
      Queue(c, TextResponse(408, "request not received within the timeout"), false);
      Flush(c);
      if (connections_.find(fd) == connections_.end()) continue;
      // The reply is in the socket buffer or abandoned; the connection ends either way.
    }
    Close(c);
  }
}

Response HttpMetadataServer::Impl::Handle(HttpRequest request) {
  if (request.path == "/health") {
    if (request.method != "GET" && request.method != "HEAD") {
      Response r = TextResponse(405, "use GET /health");
      r.extra_headers = "Allow: GET, HEAD\r\n";
      return r;
    }
    return TextResponse(200, "OK");
  }
  if (request.path != "/metadata") {
    return TextResponse(404, absl::StrCat("no such path '", request.path,
                                          "'; the API is /metadata?key=K and /health"));
  }
  if (request.method != "GET" && request.method != "PUT" && request.method != "DELETE") {
    Response r = TextResponse(405, absl::StrCat("method ", request.method,
                                                " not allowed on /metadata; use GET, PUT or "
                                                "DELETE"));
    r.extra_headers = "Allow: GET, PUT, DELETE\r\n";
    return r;
  }
  if (request.method != "GET") {
    const std::string* given = request.FindHeader(kAuthHeader);
    if (!AuthTokenMatches(options_.auth_token, given == nullptr ? "" : *given)) {
      auth_refusals_.fetch_add(1);
      return TextResponse(401, absl::StrCat(request.method, " needs the ", kAuthHeader,
                                            " header with the server's ", kAuthTokenEnv));
    }
  }
  auto key = FindQueryParam(request.query, "key");
  if (!key.ok()) {
    if (absl::IsNotFound(key.status())) {
      return TextResponse(400, "missing 'key' query parameter: use /metadata?key=K");
    }
    return TextResponse(400, std::string(key.status().message()));
  }
  if (key->empty()) return TextResponse(400, "empty 'key' query parameter");

  if (request.method == "GET") {
    auto value = store_.Get(*key);
    if (!value.ok()) return TextResponse(404, "metadata not found");
    Response r;
    r.content_type = "application/json";
    r.body = *std::move(value);
    return r;
  }
  if (request.method == "PUT") {
    absl::Status s = store_.Put(*key, std::move(request.body));
    if (s.ok()) return TextResponse(200, "metadata updated");
    if (absl::IsAlreadyExists(s)) return TextResponse(400, std::string(s.message()));
    if (absl::IsResourceExhausted(s)) {
      MC_LOG(WARNING) << "HTTP metadata server: " << s.message();
      return TextResponse(507, std::string(s.message()));
    }
    return TextResponse(500, std::string(s.message()));
  }
  absl::Status s = store_.Remove(*key);
  if (s.ok()) return TextResponse(200, "metadata deleted");
  return TextResponse(404, "metadata not found");
}

HttpMetadataServer::HttpMetadataServer(HttpMetadataServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpMetadataServer::~HttpMetadataServer() { Stop(); }

absl::Status HttpMetadataServer::Start() { return impl_->Start(); }

int HttpMetadataServer::port() const { return impl_->port(); }

void HttpMetadataServer::Stop() { impl_->Stop(); }

uint64_t HttpMetadataServer::auth_refusals() const { return impl_->auth_refusals(); }

}  // namespace mooncake::metadata

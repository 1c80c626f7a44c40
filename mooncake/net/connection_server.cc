#include "mooncake/net/connection_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {

ConnectionServer::ConnectionServer(std::string name, int max_connections, Handler handler,
                                   Admit admit)
    : name_(std::move(name)),
      max_connections_(max_connections),
      handler_(std::move(handler)),
      admit_(std::move(admit)) {}

ConnectionServer::~ConnectionServer() { Stop(); }

absl::Status ConnectionServer::Start(const std::string& host, int port) {
  absl::StatusOr<int> fd = ListenTcp(host, port, &port_);
  if (!fd.ok()) return fd.status();
  tcp_ = true;
  return StartOn(*fd);
}

absl::Status ConnectionServer::StartOn(int listen_fd) {
  listen_fd_ = listen_fd;
  accept_thread_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

void ConnectionServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (accept_thread_.joinable()) accept_thread_.join();
  if (listen_fd_ >= 0) close(listen_fd_);
  listen_fd_ = -1;
  std::list<std::unique_ptr<Connection>> conns;
  {
    absl::MutexLock lock(&mu_);
    conns.swap(connections_);
  }
  for (auto& c : conns) shutdown(c->fd, SHUT_RDWR);
  for (auto& c : conns) {
    c->thread.join();
    close(c->fd);
  }
}

void ConnectionServer::ReapLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->finished.load()) {
      (*it)->thread.join();
      close((*it)->fd);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void ConnectionServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    int rc = poll(&p, 1, 500);
    if (stopping_.load()) break;
    {
      absl::MutexLock lock(&mu_);
      ReapLocked();
    }
    if (rc <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        MC_LOG(WARNING) << name_ << ": out of file descriptors; retrying";
        usleep(10000);
      }
      continue;
    }
    if (tcp_) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (admit_ && !admit_(fd)) {
      close(fd);
      continue;
    }
    absl::MutexLock lock(&mu_);
    if (connections_.size() >= static_cast<size_t>(max_connections_)) {
      MC_LOG(WARNING) << name_ << ": refusing a connection, " << max_connections_
                      << " already open";
      close(fd);
      continue;
    }
    auto conn = std::make_unique<Connection>();
    conn->fd = fd;
    Connection* raw = conn.get();
    connections_.push_back(std::move(conn));
    serving_.fetch_add(1);
    raw->thread = std::thread([this, raw] {
      handler_(raw->fd);
      shutdown(raw->fd, SHUT_RDWR);
      raw->finished.store(true);
      serving_.fetch_sub(1);
    });
  }
}

}  // namespace mooncake

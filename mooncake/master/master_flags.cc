#include "mooncake/master/master_flags.h"

#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"

ABSL_FLAG(int32_t, port, 50051, "gRPC port of the master service, 1..65535.");
ABSL_FLAG(std::string, bind_address, "0.0.0.0",
          "Numeric IPv4/IPv6 address that every listener binds: gRPC, metrics and the embedded "
          "metadata server (unless --http_metadata_server_host is set). 127.0.0.1 keeps the "
          "master off the network.");
ABSL_FLAG(int32_t, rpc_thread_num, 4,
          "gRPC polling threads, 1..1024 (handlers run on them; gRPC adds threads under load).");
ABSL_FLAG(uint64_t, default_kv_lease_ttl, 10000,
          "Read lease in milliseconds granted by exist and get-replica-list; a leased object is "
          "neither evicted nor removed unless forced. > 0.");
ABSL_FLAG(double, eviction_high_watermark_ratio, 0.9,
          "Evict when allocated / capacity reaches this ratio, in (0, 1]. Eviction also runs when "
          "an allocation fails.");
ABSL_FLAG(double, eviction_ratio, 0.05,
          "Fraction of the evictable objects one eviction removes (least recently used first, "
          "soft-pinned last), in (0, 1].");
ABSL_FLAG(int64_t, client_ttl, 10,
          "Seconds without a heartbeat after which a client's segments are unmounted and their "
          "objects dropped; the client is told to remount when it returns. > 0.");
ABSL_FLAG(int64_t, put_start_discard_timeout_sec, 30,
          "Seconds after which an unfinished put is discarded and its key freed. > 0.");
ABSL_FLAG(int64_t, put_start_release_timeout_sec, 600,
          "Seconds after its start before a discarded put's space is reused (protects a slow "
          "writer). >= --put_start_discard_timeout_sec.");
ABSL_FLAG(int32_t, metrics_port, 9003,
          "HTTP port for /metrics (Prometheus), /get_all_segments and /health, 1..65535.");
ABSL_FLAG(int32_t, fast_rpc_port, 0,
          "Port of the fast binary RPC path for hot per-key calls (clients learn it from their "
          "heartbeat and fall back to gRPC without it): 1..65535, 0 picks a free port, -1 "
          "disables it.");
ABSL_FLAG(bool, enable_http_metadata_server, false,
          "Also serve the HTTP metadata server (GET/PUT/DELETE /metadata?key=) in this process.");
ABSL_FLAG(int32_t, http_metadata_server_port, 8080,
          "Port of the embedded HTTP metadata server, 1..65535.");
ABSL_FLAG(std::string, http_metadata_server_host, "",
          "Address the embedded HTTP metadata server binds; empty means --bind_address.");
ABSL_FLAG(bool, enable_offload, false,
          "SSD tier (docs/ssd_tier.md): storage processes started with an offload directory "
          "(MOONCAKE_OFFLOAD_FILE_STORAGE_PATH, setup(enable_ssd_offload=True)) copy every "
          "completed object of their segment to disk; eviction then frees memory and keeps the "
          "object readable from disk. Not with --enable_ha yet.");
ABSL_FLAG(bool, offload_on_evict, false,
          "Write objects to disk only when they are evicted. Not supported yet: with "
          "--enable_offload every completed object is written at once (write-behind).");
ABSL_FLAG(bool, promotion_on_hit, false,
          "Copy an object read from disk back to memory. Not supported yet.");
ABSL_FLAG(bool, enable_ha, false,
          "High availability (docs/ha.md): run 2 or 3 masters with the same --cluster_id; one "
          "is elected leader on an etcd lease and answers a change only once every in-sync "
          "standby holds it. Clients use etcd://<endpoints> as the master address.");
ABSL_FLAG(std::string, etcd_endpoints, "",
          "etcd endpoints for --enable_ha, e.g. \"10.0.0.1:2379;10.0.0.2:2379\" (';' or ',').");
ABSL_FLAG(std::string, cluster_id, "mooncake_cluster",
          "Names the HA group in etcd (keys under mooncake-store/<cluster_id>/); clients read "
          "the leader from mooncake-store/<cluster_id>/master_view.");
ABSL_FLAG(int64_t, ha_lease_ttl, 2,
          "Seconds of the leader's etcd lease, 1..600: a dead leader is replaced within about "
          "this long (etcd grants at least 2 with its default timings).");
ABSL_FLAG(int32_t, ha_replication_port, 0,
          "Port on which a standby receives the leader's journal: 1..65535, 0 picks a free one.");
ABSL_FLAG(int64_t, ha_ack_timeout_ms, 1000,
          "A standby that has not confirmed a change for this long leaves the in-sync set (and "
          "can no longer take over). > 0.");
ABSL_FLAG(std::string, advertise_host, "",
          "Host other masters and clients use to reach this one; empty means --bind_address, or "
          "this machine's hostname when that is a wildcard.");

namespace mooncake {
namespace {

absl::Status Bad(const char* flag, const std::string& value, const char* why) {
  return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("--", flag, "=", value, ": ", why));
}

absl::Status CheckPortFlag(const char* flag, int32_t port) {
  if (port < 1 || port > 65535) return Bad(flag, std::to_string(port), "not a port (1..65535)");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MasterServerOptions> MasterServerOptionsFromFlags() {
  MasterServerOptions o;
  o.enable_ha = absl::GetFlag(FLAGS_enable_ha);
  if (o.enable_ha) {
    for (absl::string_view e :
         absl::StrSplit(absl::GetFlag(FLAGS_etcd_endpoints), absl::ByAnyChar(";,"))) {
      e = absl::StripAsciiWhitespace(e);
      if (!e.empty()) o.ha.etcd_endpoints.emplace_back(e);
    }
    if (o.ha.etcd_endpoints.empty()) {
      return Bad("etcd_endpoints", "", "--enable_ha needs at least one etcd endpoint");
    }
    o.ha.cluster_id = absl::GetFlag(FLAGS_cluster_id);
    if (o.ha.cluster_id.empty() || absl::StrContains(o.ha.cluster_id, "/")) {
      return Bad("cluster_id", o.ha.cluster_id, "must be non-empty, without '/'");
    }
    o.ha.lease_ttl_seconds = absl::GetFlag(FLAGS_ha_lease_ttl);
    if (o.ha.lease_ttl_seconds < 1 || o.ha.lease_ttl_seconds > 600) {
      return Bad("ha_lease_ttl", std::to_string(o.ha.lease_ttl_seconds), "must be in 1..600");
    }
    o.ha.replication_port = absl::GetFlag(FLAGS_ha_replication_port);
    if (o.ha.replication_port < 0 || o.ha.replication_port > 65535) {
      return Bad("ha_replication_port", std::to_string(o.ha.replication_port),
                 "expected 0 or 1..65535");
    }
    const int64_t ack_ms = absl::GetFlag(FLAGS_ha_ack_timeout_ms);
    if (ack_ms <= 0 || ack_ms > 600000) {
      return Bad("ha_ack_timeout_ms", std::to_string(ack_ms), "must be in 1..600000");
    }
    o.ha.ack_timeout = absl::Milliseconds(ack_ms);
  } else if (!absl::GetFlag(FLAGS_etcd_endpoints).empty()) {
    MC_LOG(WARNING) << "--etcd_endpoints is used only with --enable_ha; ignoring it";
  }
  o.service.enable_offload = absl::GetFlag(FLAGS_enable_offload);
  if (o.service.enable_offload && o.enable_ha) {
    return Bad("enable_offload", "true",
               "the SSD tier does not combine with --enable_ha yet (disk copies are not "
               "replicated to standbys)");
  }
  if (absl::GetFlag(FLAGS_offload_on_evict)) {
    return Bad("offload_on_evict", "true",
               "not supported: with --enable_offload objects are written to disk as they "
               "complete, so an evicted object is already there");
  }
  if (absl::GetFlag(FLAGS_promotion_on_hit)) {
    return Bad("promotion_on_hit", "true", "not supported yet: disk hits are served from disk");
  }
  o.port = absl::GetFlag(FLAGS_port);
  if (absl::Status s = CheckPortFlag("port", o.port); !s.ok()) return s;
  o.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  if (absl::Status s = CheckPortFlag("metrics_port", o.metrics_port); !s.ok()) return s;
  o.fast_rpc_port = absl::GetFlag(FLAGS_fast_rpc_port);
  if (o.fast_rpc_port < -1 || o.fast_rpc_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--fast_rpc_port=", o.fast_rpc_port, ": expected -1, 0 or 1..65535"));
  }
  o.http_metadata_server_port = absl::GetFlag(FLAGS_http_metadata_server_port);
  if (absl::Status s = CheckPortFlag("http_metadata_server_port", o.http_metadata_server_port);
      !s.ok()) {
    return s;
  }
  o.bind_address = absl::GetFlag(FLAGS_bind_address);
  o.http_metadata_server_host = absl::GetFlag(FLAGS_http_metadata_server_host);
  o.enable_http_metadata_server = absl::GetFlag(FLAGS_enable_http_metadata_server);
  absl::StatusOr<std::string> token = AuthTokenFromEnv();
  if (!token.ok()) return token.status();
  o.auth_token = *token;

  o.rpc_thread_num = absl::GetFlag(FLAGS_rpc_thread_num);
  if (o.rpc_thread_num < 1 || o.rpc_thread_num > 1024) {
    return Bad("rpc_thread_num", std::to_string(o.rpc_thread_num), "must be in 1..1024");
  }
  const uint64_t lease_ms = absl::GetFlag(FLAGS_default_kv_lease_ttl);
  if (lease_ms == 0 || lease_ms > uint64_t{1} << 40) {
    return Bad("default_kv_lease_ttl", std::to_string(lease_ms),
               "must be > 0 milliseconds (and sane)");
  }
  o.service.default_kv_lease_ttl = absl::Milliseconds(static_cast<int64_t>(lease_ms));
  const double watermark = absl::GetFlag(FLAGS_eviction_high_watermark_ratio);
  if (!(watermark > 0 && watermark <= 1)) {
    return Bad("eviction_high_watermark_ratio", absl::StrCat(watermark), "must be in (0, 1]");
  }
  o.service.eviction_high_watermark_ratio = watermark;
  const double ratio = absl::GetFlag(FLAGS_eviction_ratio);
  if (!(ratio > 0 && ratio <= 1)) {
    return Bad("eviction_ratio", absl::StrCat(ratio), "must be in (0, 1]");
  }
  o.service.eviction_ratio = ratio;
  const int64_t client_ttl = absl::GetFlag(FLAGS_client_ttl);
  if (client_ttl <= 0 || client_ttl > (int64_t{1} << 32)) {
    return Bad("client_ttl", std::to_string(client_ttl), "must be > 0 seconds (and sane)");
  }
  o.service.client_ttl = absl::Seconds(client_ttl);
  const int64_t discard = absl::GetFlag(FLAGS_put_start_discard_timeout_sec);
  if (discard <= 0 || discard > (int64_t{1} << 32)) {
    return Bad("put_start_discard_timeout_sec", std::to_string(discard), "must be > 0 seconds");
  }
  const int64_t release = absl::GetFlag(FLAGS_put_start_release_timeout_sec);
  if (release < discard || release > (int64_t{1} << 32)) {
    return Bad("put_start_release_timeout_sec", std::to_string(release),
               "must be >= --put_start_discard_timeout_sec");
  }
  o.service.put_start_discard_timeout = absl::Seconds(discard);
  o.service.put_start_release_timeout = absl::Seconds(release);

  if (absl::Status s = ValidateMasterServerOptions(o); !s.ok()) {
    // Addresses are the only checks left; name the flag.
    const char* flag = absl::StrContains(s.message(), "http_metadata_server_host")
                           ? "http_metadata_server_host"
                           : "bind_address";
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrCat("--", flag, ": ", s.message()));
  }
  if (o.enable_ha) {
    o.ha.bind_host = o.bind_address;
    o.ha.advertise_host = absl::GetFlag(FLAGS_advertise_host);
    if (o.ha.advertise_host.empty()) {
      o.ha.advertise_host = o.bind_address;
      if (o.bind_address == "0.0.0.0" || o.bind_address == "::") {
        char name[256] = {};
        o.ha.advertise_host = gethostname(name, sizeof(name) - 1) == 0 ? name : "127.0.0.1";
      }
    }
  }
  return o;
}

void SetMasterFlagsUsageConfig() {
  absl::FlagsUsageConfig config;
  auto ours = [](absl::string_view file) { return absl::StrContains(file, "mooncake/master/"); };
  config.contains_help_flags = ours;
  config.contains_helpshort_flags = ours;
  absl::SetFlagsUsageConfig(config);
}

}  // namespace mooncake

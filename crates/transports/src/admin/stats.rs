//! `server_stats`, every 2 s to the admin sockets: this node's id, host,
//! process, uptime, connections (and how many poll), its namespaces with
//! their sockets, and the events of the last two seconds
//! (`aggregatedEvents`, from the hub's counters: connections opened and
//! closed, messages published, broadcast frames and bytes queued).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volna_hub::{Hub, Stats};

/// How often `server_stats` goes out, as the reference.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// The counters `aggregatedEvents` is made of, read at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Connections registered (`rawConnection`).
    pub opened: u64,
    /// Connections gone (`rawDisconnection`).
    pub closed: u64,
    /// Messages published to rooms (`packetsIn`).
    pub messages: u64,
    /// Frames broadcasts queued (`packetsOut`).
    pub deliveries: u64,
    /// Their bytes (`bytesOut`).
    pub bytes_out: u64,
}

impl Counters {
    /// The hub's counters now.
    pub fn read(stats: &Stats) -> Counters {
        Counters {
            opened: Stats::get(&stats.connections_opened),
            closed: Stats::get(&stats.connections_closed),
            messages: Stats::get(&stats.messages),
            deliveries: Stats::get(&stats.deliveries),
            bytes_out: Stats::get(&stats.broadcast_bytes),
        }
    }

    /// The reference's aggregated events since `before`, stamped `ts` (ms,
    /// truncated to the second as the reference's buffer): one per kind
    /// that happened.
    pub fn since(&self, before: &Counters, ts: u64) -> Vec<Value> {
        let ts = ts - ts % 1000;
        [
            ("rawConnection", self.opened, before.opened),
            ("rawDisconnection", self.closed, before.closed),
            ("packetsIn", self.messages, before.messages),
            ("packetsOut", self.deliveries, before.deliveries),
            ("bytesOut", self.bytes_out, before.bytes_out),
        ]
        .into_iter()
        .filter(|(_, now, was)| now > was)
        .map(|(kind, now, was)| json!({"timestamp": ts, "type": kind, "count": now - was}))
        .collect()
    }
}

/// This node's `server_stats`.
pub struct ServerStats {
    server_id: String,
    hostname: String,
    started: Instant,
    last: Mutex<Counters>,
}

/// The machine's name: `/proc/sys/kernel/hostname`, `/etc/hostname`, or
/// `$HOSTNAME`.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

impl ServerStats {
    /// Stats of a node called `server_id` (default: `hostname#pid`, unique
    /// among the nodes of one machine too).
    pub fn new(server_id: Option<String>, hub: &Hub) -> ServerStats {
        let hostname = hostname();
        ServerStats {
            server_id: server_id.unwrap_or_else(|| format!("{hostname}#{}", std::process::id())),
            hostname,
            started: Instant::now(),
            last: Mutex::new(Counters::read(hub.stats())),
        }
    }

    /// The node's id in the UI.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The `server_stats` payload now; its `aggregatedEvents` are those
    /// since the previous call.
    pub fn payload(&self, hub: &Hub) -> Value {
        let census = hub.census();
        let now = Counters::read(hub.stats());
        let events = {
            let mut last = self.last.lock().unwrap();
            let events = now.since(&last, volna_hub::now_ms());
            *last = now;
            events
        };
        let mut namespaces: Vec<Value> = Vec::new();
        let mut listed = |name: &str, count: usize| {
            namespaces.push(json!({"name": name, "socketsCount": count}));
        };
        let has = |name: &str| census.namespaces.iter().any(|(n, _)| &**n == name);
        if !has("/") {
            listed("/", 0);
        }
        if !has(super::NAMESPACE) {
            listed(super::NAMESPACE, 0);
        }
        for (name, count) in &census.namespaces {
            listed(name, *count);
        }
        let polling = census
            .transports
            .iter()
            .find(|(t, _)| *t == "polling")
            .map_or(0, |(_, n)| *n);
        json!({
            "serverId": &self.server_id,
            "hostname": &self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": census.connections,
            "pollingClientsCount": polling,
            "aggregatedEvents": events,
            "namespaces": namespaces,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volna_hub::HubConfig;

    #[test]
    fn aggregated_events_are_the_differences() {
        let before = Counters {
            opened: 1,
            ..Counters::default()
        };
        let now = Counters {
            opened: 4,
            closed: 1,
            messages: 0,
            deliveries: 7,
            bytes_out: 700,
        };
        let events = now.since(&before, 12_345);
        assert_eq!(
            Value::Array(events),
            json!([
                {"timestamp": 12_000, "type": "rawConnection", "count": 3},
                {"timestamp": 12_000, "type": "rawDisconnection", "count": 1},
                {"timestamp": 12_000, "type": "packetsOut", "count": 7},
                {"timestamp": 12_000, "type": "bytesOut", "count": 700},
            ])
        );
    }

    #[test]
    fn server_stats_has_the_reference_fields() {
        let hub = Hub::new(HubConfig::default());
        let stats = ServerStats::new(Some("eu-1".into()), &hub);
        let p = stats.payload(&hub);
        for key in [
            "serverId",
            "hostname",
            "pid",
            "uptime",
            "clientsCount",
            "pollingClientsCount",
            "aggregatedEvents",
            "namespaces",
        ] {
            assert!(p.get(key).is_some(), "{key}");
        }
        assert_eq!(p["serverId"], "eu-1");
        assert_eq!(p["clientsCount"], 0);
        assert_eq!(
            p["namespaces"],
            json!([{"name": "/", "socketsCount": 0}, {"name": "/admin", "socketsCount": 0}])
        );
        assert!(ServerStats::new(None, &hub).server_id().contains('#'));
    }
}

//! `GET /metrics`: every figure of the server in the Prometheus / OpenMetrics
//! text format, written by the official client (`prometheus-client`).
//!
//! Why `prometheus-client` rather than `metrics` with its exporter: it is
//! the Prometheus project's own, small (no HTTP server, no TLS stack), and
//! its [`Collector`] reads values at scrape time. Nearly every figure
//! already lives in an atomic counter of the layer that owns it (the hub's
//! [`Stats`](volna_hub::Stats), the hooks', the image pool's, the cluster
//! adapter's); a scrape reads them, so the hot path pays nothing for
//! `/metrics`, and no scrape walks the connections. Label sets are fixed
//! and small (protocol, operation, kind, hook, outcome, method, code):
//! never a room, a user or a client.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use volna_hub::{Stats, EVENT_KINDS, PROTOCOLS};

use crate::hooks::{Hook, HookStats};
use crate::http::HttpState;
use crate::meters::{OPERATIONS, RECOVERY_OUTCOMES};

/// The upper bounds of the event-loop lag histogram, in microseconds.
const LAG_BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// The router serving `GET /metrics`.
pub fn router(state: HttpState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// `GET /metrics`.
async fn metrics(State(state): State<HttpState>) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(state)));
    let mut body = String::with_capacity(16 << 10);
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            [(
                CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// One scrape: reads the server's figures as it encodes them.
struct Scrape(HttpState);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

type Result = std::result::Result<(), std::fmt::Error>;

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A counter family with one label.
fn counters<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, v) in values {
        ConstCounter::new(v).encode(m.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

/// A gauge family with one label.
fn gauges<'a>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, i64)>,
) -> Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (value, v) in values {
        ConstGauge::new(v).encode(m.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result {
        let state = &self.0;
        let app = &state.app;
        let hub = &app.hub;
        let s = hub.stats();
        let info =
            prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        info.encode(e.encode_descriptor(
            "volna_build",
            "This server's version.",
            None,
            info.metric_type(),
        )?)?;

        // Connections, rooms, requests, deliveries.
        let protocols = || PROTOCOLS.iter().enumerate().filter(|(i, _)| *i < 3);
        gauges(
            &mut e,
            "volna_connections",
            "Connections open, by protocol.",
            "protocol",
            protocols().map(|(i, p)| {
                let open =
                    get(&s.opened_by_protocol[i]).saturating_sub(get(&s.closed_by_protocol[i]));
                (*p, open as i64)
            }),
        )?;
        counters(
            &mut e,
            "volna_connections_accepted",
            "Connections accepted since start, by protocol.",
            "protocol",
            protocols().map(|(i, p)| (*p, get(&s.opened_by_protocol[i]))),
        )?;
        gauge(
            &mut e,
            "volna_rooms",
            "Rooms, of every namespace.",
            hub.room_count() as i64,
        )?;
        gauge(
            &mut e,
            "volna_room_members",
            "Room memberships: the members of all rooms together.",
            s.memberships.load(Ordering::Relaxed),
        )?;
        {
            let meters = &app.meters;
            let mut m = e.encode_descriptor(
                "volna_requests",
                "Operations clients asked for, by protocol and operation.",
                None,
                MetricType::Counter,
            )?;
            for (p, protocol) in protocols() {
                for (o, op) in OPERATIONS.iter().enumerate() {
                    let v = meters.requests(p, o);
                    if v > 0 {
                        ConstCounter::new(v)
                            .encode(m.encode_family(&[("protocol", *protocol), ("op", *op)])?)?;
                    }
                }
            }
        }
        counter(
            &mut e,
            "volna_messages",
            "Messages and events published to rooms.",
            Stats::get(&s.messages),
        )?;
        {
            let mut m = e.encode_descriptor(
                "volna_deliveries",
                "Frames queued to receivers by broadcasts, by kind of broadcast and receiver's protocol.",
                None,
                MetricType::Counter,
            )?;
            for (k, kind) in EVENT_KINDS.iter().enumerate() {
                for (p, protocol) in protocols() {
                    let v = get(&s.deliveries_by_kind[k][p]);
                    ConstCounter::new(v)
                        .encode(m.encode_family(&[("kind", *kind), ("protocol", *protocol)])?)?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "volna_received",
                "Bytes clients sent (lines, WebSocket messages, polling bodies), by protocol.",
                Some(&Unit::Bytes),
                MetricType::Counter,
            )?;
            for (p, protocol) in protocols() {
                ConstCounter::new(get(&s.received_bytes[p]))
                    .encode(m.encode_family(&[("protocol", *protocol)])?)?;
            }
        }
        {
            let c = ConstCounter::new(get(&s.broadcast_bytes));
            c.encode(e.encode_descriptor(
                "volna_broadcast",
                "Bytes broadcasts queued to receivers.",
                Some(&Unit::Bytes),
                c.metric_type(),
            )?)?;
        }
        counters(
            &mut e,
            "volna_disconnects",
            "Connections gone, by why their transport closed (left: a Socket.IO socket left its namespace).",
            "reason",
            volna_hub::CloseReason::CODES
                .iter()
                .chain(std::iter::once(&"left"))
                .enumerate()
                .map(|(i, r)| (*r, get(&s.closed_by_reason[i]))),
        )?;
        counter(
            &mut e,
            "volna_slow_consumer_disconnects",
            "Connections closed because their outgoing queue overflowed.",
            get(&s.slow_consumers),
        )?;
        counter(
            &mut e,
            "volna_volatile_dropped",
            "Volatile events not delivered to a member whose queue was busy.",
            get(&s.volatile_dropped),
        )?;
        counter(
            &mut e,
            "volna_protocol_closes",
            "Connections closed for a protocol violation.",
            get(&s.protocol_closes),
        )?;
        counters(
            &mut e,
            "volna_refused_requests",
            "Requests refused, by reason.",
            "reason",
            [
                ("bad_input", get(&s.bad_input)),
                ("rate_limited", get(&s.rate_limited)),
                ("too_many_pending", get(&s.too_many_pending)),
            ],
        )?;
        let [too_many_open, too_fast] = app.ip_gate.refused();
        counters(
            &mut e,
            "volna_limit_hits",
            "Requests or connections stopped by a limit, by limit.",
            "limit",
            [
                ("requests_per_second", get(&s.rate_limited)),
                ("pending_per_connection", get(&s.too_many_pending)),
                ("connections_per_address", too_many_open),
                ("new_connections_per_address", too_fast),
            ],
        )?;

        // Histories and recovery.
        let h = hub.history_size();
        {
            let g = ConstGauge::new(h.bytes as i64);
            g.encode(e.encode_descriptor(
                "volna_history",
                "What all rooms' histories hold.",
                Some(&Unit::Bytes),
                g.metric_type(),
            )?)?;
            let g = ConstGauge::new(h.max_bytes as i64);
            g.encode(e.encode_descriptor(
                "volna_history_budget",
                "What all rooms' histories may hold.",
                Some(&Unit::Bytes),
                g.metric_type(),
            )?)?;
        }
        counter(
            &mut e,
            "volna_history_evicted_rooms",
            "Rooms whose history was dropped to stay within the budget.",
            h.evicted,
        )?;
        if let Some((_, sessions, logged)) = hub.recovery_sizes() {
            gauge(
                &mut e,
                "volna_recovery_sessions",
                "Sessions kept for connection-state recovery.",
                sessions as i64,
            )?;
            gauge(
                &mut e,
                "volna_recovery_logged",
                "Messages the recovery log holds.",
                logged as i64,
            )?;
        }
        counters(
            &mut e,
            "volna_recoveries",
            "Socket.IO connections that named a session, by outcome.",
            "outcome",
            RECOVERY_OUTCOMES
                .iter()
                .enumerate()
                .map(|(i, o)| (*o, app.meters.recoveries(i))),
        )?;

        // Hooks and the server API.
        let hooks: &HookStats = app.hooks.stats();
        {
            let mut m = e.encode_descriptor(
                "volna_hook_calls",
                "Backend hook calls, by hook and outcome.",
                None,
                MetricType::Counter,
            )?;
            for hook in Hook::ALL {
                for (o, outcome) in HookStats::OUTCOMES.iter().enumerate() {
                    let v = get(&hooks.by_outcome[hook as usize][o]);
                    ConstCounter::new(v).encode(
                        m.encode_family(&[("hook", hook.name()), ("outcome", *outcome)])?,
                    )?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "volna_hook_duration",
                "How long backend hook calls took, by hook.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for hook in Hook::ALL {
                hooks.seconds[hook as usize].encode(m.encode_family(&[("hook", hook.name())])?)?;
            }
        }
        app.meters.api.encode(e.encode_descriptor(
            "volna_api_requests",
            "Server API calls, by method and code (0: a result).",
            None,
            MetricType::Counter,
        )?)?;

        // The event loop and the image pool.
        if let Some(lag) = &state.lag {
            let b = lag.buckets(&LAG_BOUNDS_US);
            let m = e.encode_descriptor(
                "volna_event_loop_lag",
                "How late the event loop woke a 10 ms ticker.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            let mut m = m;
            m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                b.sum_seconds,
                b.count,
                &b.buckets,
                None,
            )?;
        }
        if let Some(images) = &app.images {
            let p = images.pool().stats();
            counters(
                &mut e,
                "volna_image_jobs",
                "Thumbnail jobs, by outcome.",
                "outcome",
                [
                    ("done", p.done),
                    ("failed", p.failed),
                    ("rejected_busy", p.rejected_busy),
                    ("cancelled", p.cancelled),
                ],
            )?;
            gauge(
                &mut e,
                "volna_image_queue_depth",
                "Thumbnail jobs waiting for a worker.",
                p.queue_depth as i64,
            )?;
            gauge(
                &mut e,
                "volna_image_running",
                "Thumbnail jobs being worked on.",
                p.running as i64,
            )?;
            gauge(
                &mut e,
                "volna_image_workers",
                "Thumbnail worker threads.",
                p.workers as i64,
            )?;
            let c = ConstCounter::new(p.work_us as f64 / 1e6);
            c.encode(e.encode_descriptor(
                "volna_image_work",
                "Time workers spent making thumbnails.",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?)?;
        }

        // The cluster.
        if let Some(adapter) = hub.adapter() {
            let c = adapter.health();
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            gauge(
                &mut e,
                "volna_cluster_redis_up",
                "1 while Redis answers.",
                i64::from(c["redis"] == "up"),
            )?;
            gauge(
                &mut e,
                "volna_cluster_nodes",
                "volna nodes of the cluster this node knows, itself included.",
                adapter.nodes().len() as i64 + 1,
            )?;
            for (key, help) in [
                ("published", "Events this node published to Redis."),
                (
                    "publish_dropped",
                    "Cross-node events not sent: Redis down or the queue full.",
                ),
                ("received", "Broadcasts received from other servers."),
                (
                    "decode_errors",
                    "Payloads from Redis that could not be read.",
                ),
                ("redis_outages", "Times Redis became unreachable."),
                (
                    "probes_slow",
                    "Redis health probes late while Redis kept answering (a busy node).",
                ),
                (
                    "sessions_restored",
                    "Socket.IO sessions restored from Redis (streams mode).",
                ),
                (
                    "sessions_not_restored",
                    "Recoveries that found no session or offset in Redis (streams mode).",
                ),
                (
                    "delivered_unlogged",
                    "Messages delivered without their place in the stream (streams mode).",
                ),
            ] {
                let mut name = String::from("volna_cluster_");
                let _ = write!(name, "{key}");
                counter(&mut e, &name, help, n(key))?;
            }
        }
        Ok(())
    }
}

//! `volna bench`: a load generator for Socket.IO v4 servers (volna or any
//! other that implements the bench contract: `join(room)` with ack,
//! `message({room, data})` broadcast as `message`, `echo(x)` with ack) and for
//! volna's own `/ws` and TCP endpoints.
//!
//! Scenarios, one module each:
//! - `conns`: open many connections, join a room, hold; connect rate,
//!   failures, server RSS per connection.
//! - `fanout`: members in one room (or many), publishers at a rate;
//!   deliveries/s, lost messages, latency percentiles, server CPU per
//!   delivery. (`bench/compare.py` also runs it unpaced as its "burst".)
//!
//! Both run on `swarm` (joining, holding, publishing and counting in one
//! process) and, with `--processes N`, on `workers` (N processes in step,
//! their parts merged), over several targets with `--urls`.
//! - `echo`: round trips with acks; rate and latency percentiles (with
//!   `--rpc`, through the server's rpc hook).
//! - `api`: the server API publishing into a room; requests/s,
//!   deliveries/s, latency, CPU per delivery.
//! - `hook-backend`: not a load: an rpc hook backend answering at once (or
//!   after a delay) for `echo --rpc`.
//! - `images`: images shared over `/ws` while echo clients measure round
//!   trips; echo latency and the server's event-loop lag.
//!
//! This module holds the command line ([`Scenario`]) and the dispatch
//! ([`run`]). The scenarios share `common` (options every scenario takes),
//! `members` (connecting and joining clients), `client` (the protocol
//! clients), `report` (the figures and how they print), `progress` (the
//! progress bar) and `procfs` (the server's CPU time and RSS).

mod api;
mod client;
mod common;
mod conns;
mod deliveries;
mod echo;
mod fanout;
mod http;
mod images;
mod members;
mod pacer;
mod procfs;
mod progress;
mod report;
mod swarm;
mod workers;

pub use common::Common;

/// `volna bench` scenarios.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// Open N connections, join a room, hold them.
    Conns {
        /// The options every scenario takes.
        #[command(flatten)]
        common: Common,
        /// Connections to open.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Seconds to hold them open after the last one joined.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// N members in one room, P of them publishing M messages in total.
    Fanout {
        /// The options every scenario takes.
        #[command(flatten)]
        common: Common,
        /// Who publishes what, how fast.
        #[command(flatten)]
        plan: swarm::Plan,
        /// Seconds to hold the members once all joined, before publishing (they answer pings
        /// meanwhile; the report counts those still open).
        #[arg(long, default_value_t = 0.0)]
        hold: f64,
    },
    /// Images shared continuously over /ws while echo clients measure round trips; reports echo
    /// latency and the server's event-loop lag (run it against `volna serve` and against
    /// `volna serve --images-inline` to see why thumbnails belong on a worker pool).
    Images {
        /// The options every scenario takes.
        #[command(flatten)]
        common: Common,
        /// Echo clients.
        #[arg(long, short = 'n', default_value_t = 4)]
        clients: usize,
        /// Clients sharing images back to back.
        #[arg(long, default_value_t = 2)]
        senders: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Width of the generated test image (height is 3/4 of it).
        #[arg(long, default_value_t = 2000)]
        width: u32,
    },
    /// N clients doing round trips with acks.
    Echo {
        /// The options every scenario takes.
        #[command(flatten)]
        common: Common,
        /// Concurrent clients.
        #[arg(long, short = 'n', default_value_t = 10)]
        clients: usize,
        /// Round trips per client.
        #[arg(long, short = 'm', default_value_t = 1000)]
        messages: u64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Round trip through this application event instead of `echo`: an event the server's
        /// rpc hook answers (start `volna serve --rpc-hook-url …` and `volna bench hook-backend`).
        #[arg(long)]
        rpc: Option<String>,
    },
    /// N members in one room, the server API publishing M messages into it over C keep-alive
    /// HTTP connections (start the server with --api-key).
    Api {
        /// The options every scenario takes.
        #[command(flatten)]
        common: Common,
        /// Members of the room.
        #[arg(long, short = 'n', default_value_t = 1000)]
        clients: usize,
        /// Publish requests in total.
        #[arg(long, short = 'm', default_value_t = 2000)]
        messages: u64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// The server's HTTP address.
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        api: String,
        /// The server API key.
        #[arg(long, env = "VOLNA_API_KEY")]
        api_key: String,
        /// HTTP connections publishing at once.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Total publish rate in requests per second (0 = as fast as the answers come).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Publish this application event instead of a message.
        #[arg(long)]
        event: Option<String>,
    },
    /// Serve an rpc hook backend that answers every call with the data it was given (for
    /// `echo --rpc`); runs until interrupted.
    HookBackend {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8099")]
        addr: std::net::SocketAddr,
        /// Milliseconds to wait before answering.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

/// Runs a scenario and prints its report.
pub async fn run(scenario: Scenario) -> anyhow::Result<()> {
    let (report, json) = match scenario {
        Scenario::Conns {
            common,
            clients,
            hold,
        } => match conns::run(&common, clients, hold).await? {
            Some(report) => (report, common.json),
            None => return Ok(()),
        },
        Scenario::Fanout { common, plan, hold } => {
            match fanout::run(&common, plan, hold).await? {
                Some(report) => (report, common.json),
                // A worker of `--processes`: its part went to the parent.
                None => return Ok(()),
            }
        }
        Scenario::Echo {
            common,
            clients,
            messages,
            size,
            rpc,
        } => (
            echo::run(&common, clients, messages, size, rpc).await?,
            common.json,
        ),
        Scenario::Api {
            common,
            clients,
            messages,
            size,
            api,
            api_key,
            connections,
            rate,
            event,
        } => (
            api::run(
                &common,
                clients,
                messages,
                size,
                &api,
                &api_key,
                connections,
                rate,
                event,
            )
            .await?,
            common.json,
        ),
        Scenario::HookBackend { addr, delay_ms } => {
            http::serve_echo_hook(addr, std::time::Duration::from_millis(delay_ms)).await?;
            return Ok(());
        }
        Scenario::Images {
            common,
            clients,
            senders,
            duration,
            width,
        } => (
            images::run(&common, clients, senders, duration, width).await?,
            common.json,
        ),
    };
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

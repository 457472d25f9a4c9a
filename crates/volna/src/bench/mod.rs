//! `volna bench`: a load generator for Socket.IO v4 servers (volna or any
//! other that implements the bench contract: `join(room)` with ack,
//! `message({room, data})` broadcast as `message`, `echo(x)` with ack) and for
//! volna's own `/ws` and TCP endpoints.
//!
//! Scenarios, one module each:
//! - `conns`: open many connections, join a room, hold; connect rate,
//!   failures, server RSS per connection.
//! - `fanout`: members in one room, publishers at a rate; deliveries/s, lost
//!   messages, latency percentiles, server CPU per delivery. (`bench/compare.py`
//!   also runs it unpaced as its "burst".)
//! - `echo`: round trips with acks; rate and latency percentiles.
//! - `images`: images shared over `/ws` while echo clients measure round
//!   trips; echo latency and the server's event-loop lag.
//!
//! This module holds the command line ([`Scenario`]) and the dispatch
//! ([`run`]). The scenarios share `common` (options every scenario takes),
//! `members` (connecting and joining clients), `client` (the protocol
//! clients), `report` (the figures and how they print), `progress` (the
//! progress bar) and `procfs` (the server's CPU time and RSS).

mod client;
mod common;
mod conns;
mod echo;
mod fanout;
mod images;
mod members;
mod procfs;
mod progress;
mod report;

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
        /// Members of the room (publishers included).
        #[arg(long, short = 'n', default_value_t = 100)]
        clients: usize,
        /// How many members publish.
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        /// Messages published in total.
        #[arg(long, short = 'm', default_value_t = 200)]
        messages: u64,
        /// Total publish rate in messages per second (0 = as fast as possible).
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Payload size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds to wait for stragglers once publishing is done.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Publish this application event (`emit`) instead of `message`.
        #[arg(long)]
        event: Option<String>,
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
    },
}

/// Runs a scenario and prints its report.
pub async fn run(scenario: Scenario) -> anyhow::Result<()> {
    let (report, json) = match scenario {
        Scenario::Conns {
            common,
            clients,
            hold,
        } => (conns::run(&common, clients, hold).await?, common.json),
        Scenario::Fanout {
            common,
            clients,
            publishers,
            messages,
            rate,
            size,
            drain,
            event,
        } => (
            fanout::run(
                &common, clients, publishers, messages, rate, size, drain, event,
            )
            .await?,
            common.json,
        ),
        Scenario::Echo {
            common,
            clients,
            messages,
            size,
        } => (
            echo::run(&common, clients, messages, size).await?,
            common.json,
        ),
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
